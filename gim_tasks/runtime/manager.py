"""Manager operations (SPEC M0-M8), one implementation for every path (``gim run``, ``gim run
--local``, ``gim aggregate once``, ``celery call``, the web API): run a job now, stop a Running
run, cancel a Scheduled one, list runs.

Admission of a manual run is the pure :func:`gim_tasks.schedule.admission.admit` called under
the same advisory lock as the beat's decisions, so a manual start and a scheduled launch never
both see the job free (S2 is also enforced by the database's unique index on Running runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gim_tasks.db import locks
from gim_tasks.db.tables import job_run
from gim_tasks.errors import Conflict, GimError, NotFound
from gim_tasks.lifecycle import RunState, StopKind
from gim_tasks.monitor import audit
from gim_tasks.options import store
from gim_tasks.runtime import pools, runs
from gim_tasks.runtime.runs import worker_name
from gim_tasks.runtime.state import load_state
from gim_tasks.schedule.admission import RunRequest, Via, admit
from gim_tasks.schedule.engine import open_window
from gim_tasks.schedule.jobs import AGGREGATE
from gim_tasks.schedule.localtime import zone
from gim_tasks.settings import Settings, get_settings


class InvalidRequest(GimError):
    """A malformed run request (unknown job, parameters where none are taken, a bad M4 token):
    refused at once, nothing recorded."""

    exit_code = 2


@dataclass(frozen=True)
class Admission:
    """What became of a manual run request: its run and state."""

    run_id: int
    state: str  # Running (sent to a worker) | Scheduled (waiting, with reason) | Rejected
    reason: str | None = None


def deployment_refusal(
    engine: Engine, settings: Settings | None = None
) -> Callable[[str], str | None]:
    """C2 at admission: the whole configuration check, server items included, per job.
    Run before taking the admission lock: it connects to every server, which may be slow."""
    from gim_tasks.runtime.health import check_deployment

    with engine.connect() as conn:
        options = store.load_options(conn)
    return check_deployment(options, settings or get_settings()).refusal


def _params_text(params: str | dict[str, Any] | None) -> str:
    if isinstance(params, dict):
        return str(params.get("params", ""))
    return params or ""


def request_run(
    engine: Engine,
    job: str,
    actor: str,
    params: str | dict[str, Any] | None = None,
    force: bool = False,
    *,
    via: Via = Via.CLI,
    now: datetime | None = None,
    refusal: Callable[[str], str | None] | None = None,
    settings: Settings | None = None,
    firing_id: str | None = None,
    retry: tuple[int, int, int] | None = None,
) -> Admission:
    """M0, M1: admit a manual run through :func:`gim_tasks.schedule.admission.admit`.

    The decision and its record are made under the admission lock (the advisory lock the
    beat's decisions take, ``db.locks.ADMISSION``), so the state it decides on cannot change
    before the record is committed; the partial unique index on Running runs (S2) backs it.

    Returns Running (send it to a worker with :func:`gim_tasks.runtime.beat.send`, or, for an
    in-process path, claim it with :func:`gim_tasks.runtime.runs.claim`), Scheduled with
    the reason, or Rejected with the reason. Raises :class:`InvalidRequest` for bad input.
    ``firing_id``: a run planned at a set time (P4) carries its firing id, unique in
    ``job_run`` (S11), so two beats admitting it record one run. ``retry``: (the failed
    attempt, this attempt's number, the attempts allowed) of an L3 retry by the beat; its
    firing id is the first attempt's with ``#k``, and the failed attempt is marked
    ``retried`` in this transaction.
    """
    request = RunRequest(job, actor, via, _params_text(params), force, retry=retry is not None)
    refused = refusal if refusal is not None else deployment_refusal(engine, settings)
    with engine.begin() as conn:
        locks.hold(conn, locks.ADMISSION)
        all_options = store.load_options(conn)
        state = load_state(conn, {})
        at = now or datetime.now(UTC)
        holdings = None
        if request.params.strip():  # D5: what a re-aggregation could be rebuilt from
            from gim_tasks.aggregate.retention import load_holdings

            holdings = load_holdings(conn, all_options, at)
        decision = admit(all_options.schedule(), at, state, request, refused, holdings)
        if decision.invalid:
            raise InvalidRequest(decision.reason or "invalid request")
        if decision.reaggregation is not None:
            from gim_tasks.db.mart_tables import agg_request  # the M4 queue (heavy module)

            queued = conn.execute(
                sa.insert(agg_request)
                .values(params=decision.reaggregation.as_dict(), requested_by=actor)
                .returning(agg_request.c.id)
            ).scalar_one()
            decision = replace(
                decision, reason=f"{decision.reason}; re-aggregation request {queued}"
            )
        if decision.joins is not None:
            _audit_run(conn, request, decision.joins, RunState.RUNNING, decision.reason)
            return Admission(decision.joins, RunState.RUNNING, decision.reason)
        values: dict[str, Any] = {
            "job": job,
            "trigger": request.trigger,
            "actor": actor,
            "params": {"params": request.params} if request.params else {},
            "forced": force,
            "reason": decision.reason,
            "in_process": via.in_process,
        }
        if firing_id is not None:
            values["firing_id"] = firing_id
        if retry is not None:
            values |= {"retry_of": retry[0], "attempt": retry[1], "max_attempts": retry[2]}
        if decision.verdict == RunState.REJECTED:
            values |= {"state": RunState.REJECTED, "ended_at": sa.func.now()}
        else:
            values["state"] = RunState.SCHEDULED
            if decision.verdict == RunState.RUNNING:
                values["dispatched_at"] = sa.func.now()  # about to run: active for the beat
            if via.in_process:
                # The waiting (or starting) process heartbeats the row; the R2 sweep cancels
                # it if that process goes away before it claims the run.
                values |= {"worker": worker_name(), "heartbeat_at": sa.func.now()}
        run_id = runs.record(conn, values)
        if run_id is not None and decision.verdict == RunState.RUNNING:
            pools.take(conn, run_id, job)  # B2: the gate found room (admission lock held)
        if run_id is not None:  # P6, in this transaction: no record, no audit row
            _audit_run(conn, request, run_id, decision.verdict, decision.reason)
            if retry is not None and decision.verdict != RunState.REJECTED:
                from gim_tasks.runtime.limits import mark_retried

                mark_retried(conn, retry[0], run_id, firing_id)
    if run_id is None:  # P4: another beat recorded this planned run first (S11)
        raise InvalidRequest(f"{firing_id} was started already")
    return Admission(run_id, decision.verdict, decision.reason)


def _audit_run(
    conn: Connection, request: RunRequest, run_id: int, state: str, reason: str | None
) -> None:
    audit.record(
        conn,
        audit.Action.RUN,
        request.job,
        request.actor,
        after={
            "run_id": run_id,
            "state": state,
            "reason": reason,
            "via": "retry" if request.retry else request.via.value,  # L3: the beat, not a path
            "params": request.params,
            "forced": request.force,
        },
    )


def readmit(
    engine: Engine,
    run_id: int,
    now: datetime | None = None,
    refusal: Callable[[str], str | None] | None = None,
) -> Admission:
    """An in-process run waiting as Scheduled asks again (M5, S13), with the same decision:
    Running when its rule cleared (or the beat released it), Scheduled with the current
    reason (its heartbeat renewed), or the state it was ended in (Cancelled by an operator).
    A refusal that appeared meanwhile (C2, S2) keeps it waiting, as the beat keeps its own
    waiting runs."""
    refused = refusal if refusal is not None else deployment_refusal(engine)
    with engine.begin() as conn:
        locks.hold(conn, locks.ADMISSION)
        row = conn.execute(sa.select(job_run).where(job_run.c.id == run_id).with_for_update()).one()
        if row.state != RunState.SCHEDULED:
            return Admission(run_id, row.state, row.reason)
        if row.dispatched_at is not None:  # released by the beat (never sent: in process)
            return Admission(run_id, RunState.RUNNING, row.reason)
        options = store.load_options(conn).schedule()
        state = load_state(conn, {})
        state = replace(state, waiting=tuple(w for w in state.waiting if w.run_id != run_id))
        request = RunRequest(row.job, row.actor, Via.LOCAL, "", bool(row.forced))
        decision = admit(options, now or datetime.now(UTC), state, request, refused)
        values: dict[str, Any] = {"heartbeat_at": sa.func.now()}
        verdict = RunState.RUNNING if decision.verdict == RunState.RUNNING else RunState.SCHEDULED
        if verdict == RunState.RUNNING:
            values["dispatched_at"] = sa.func.now()
            pools.take(conn, run_id, row.job)  # B2
        else:
            values["reason"] = decision.reason
        conn.execute(sa.update(job_run).where(job_run.c.id == run_id).values(**values))
    return Admission(
        run_id, verdict, decision.reason if verdict == RunState.SCHEDULED else row.reason
    )


def stop_run(engine: Engine, run_id: int, actor: str) -> str:
    """M6: ask a Running run to stop (cooperative; the beat revokes it after a grace period),
    or cancel it when it is still Scheduled. Returns what happened, in words."""
    with engine.begin() as conn:
        row = _lock_live(
            conn,
            run_id,
            (RunState.RUNNING, RunState.SCHEDULED),
            "only Running or Scheduled runs can be stopped",
        )
        if row.state == RunState.SCHEDULED:
            return _cancel(conn, row, actor)
        runs.request_stop(conn, run_id, f"stopped by {actor}", actor, StopKind.OPERATOR)
        audit.record(
            conn,
            audit.Action.STOP,
            run_id,
            actor,
            before={"job": row.job, "state": row.state},
            after={"stop_requested": True},
        )
        warning = ""
        if row.job == AGGREGATE:
            options = store.load_options(conn).schedule()
            if options.run_aggregates and open_window(
                options, datetime.now(UTC), zone(options.timezone)
            ):
                warning = (
                    "; warning: its aggregation window is open and run-aggregates=true, so "
                    "the scheduler restarts it within a tick (S7); set run-aggregates=false "
                    "to keep it stopped"
                )
    return f"run {run_id} ({row.job}): stop requested; it stops at its next safe point{warning}"


def cancel_run(engine: Engine, run_id: int, actor: str) -> str:
    """M6: a Scheduled run leaves the scheduled list and is recorded Cancelled."""
    with engine.begin() as conn:
        row = _lock_live(
            conn,
            run_id,
            (RunState.SCHEDULED,),
            "only Scheduled runs can be cancelled (use `gim stop` for a Running run)",
        )
        return _cancel(conn, row, actor)


def _lock_live(conn: Connection, run_id: int, states: tuple[str, ...], allowed: str) -> sa.Row[Any]:
    """The run's row, locked, when it is in one of ``states``; else the error says what it is.
    (Read first without the lock: for the web's role, row-level security hides ended runs from
    a locking read, and the message must still say what the run is.)"""
    state = conn.execute(
        sa.select(job_run.c.state).where(job_run.c.id == run_id)
    ).scalar_one_or_none()
    if state is None:
        raise NotFound(f"run {run_id} does not exist")
    if state in states:
        row = conn.execute(
            sa.select(job_run)
            .where(job_run.c.id == run_id, job_run.c.state.in_(states))
            .with_for_update()
        ).one_or_none()
        if row is not None:
            return row
        # It changed state since the first read (it ended, or was claimed).
        state = conn.execute(sa.select(job_run.c.state).where(job_run.c.id == run_id)).scalar_one()
    raise Conflict(f"run {run_id} is {state}; {allowed}")


def _cancel(conn: Connection, row: sa.Row[Any], actor: str) -> str:
    runs.cancel(conn, row.id, actor)
    audit.record(
        conn,
        audit.Action.CANCEL,
        row.id,
        actor,
        before={"job": row.job, "state": row.state},
        after={"state": RunState.CANCELLED},
    )
    return f"run {row.id} ({row.job}): Cancelled"
