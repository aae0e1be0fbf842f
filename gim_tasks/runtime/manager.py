"""Manager operations (SPEC M1-M8), one implementation for the CLI, ``celery call`` and the
web API: run a job now, stop a Running run, cancel a Scheduled one, list runs.

Admission of a manual run takes the same advisory lock as the beat's decisions, so a manual
start and a scheduled launch never both see the job free (S2 is also enforced by the
database's unique index on Running runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gim_tasks.aggregate.params import ParamError
from gim_tasks.aggregate.params import parse as parse_params
from gim_tasks.db.mart_tables import agg_request
from gim_tasks.db.tables import job_run
from gim_tasks.errors import GimError
from gim_tasks.jobs.registry import BODIES
from gim_tasks.options import store
from gim_tasks.options.check import check_options
from gim_tasks.runtime.beat import ADMISSION_LOCK_KEY
from gim_tasks.schedule.engine import open_window
from gim_tasks.schedule.jobs import AGGREGATE, BY_NAME, JOB_NAMES, MAINTAIN
from gim_tasks.schedule.localtime import zone

OPTION_OF = {"Job_UpdateStats": "update-stats-schedule", "Job_ExportGIM": "export-schedule"}


@dataclass(frozen=True)
class Admission:
    run_id: int
    state: str  # Running (sent to a worker) | Scheduled (waiting, with reason) | Rejected
    reason: str | None = None


def _record(
    conn: Connection, values: dict[str, Any], state: str, reason: str | None, **extra: Any
) -> int:
    """Insert a run row (M8: who and when are in ``values`` and ``created_at``)."""
    if state == "Rejected":
        extra["ended_at"] = sa.func.now()
    return int(
        conn.execute(
            sa.insert(job_run)
            .values(**values, state=state, reason=reason, **extra)
            .returning(job_run.c.id)
        ).scalar_one()
    )


def _active(conn: Connection) -> list[sa.Row[Any]]:
    """Runs Running or about to run (sent to a worker)."""
    return list(
        conn.execute(
            sa.select(job_run.c.id, job_run.c.job, job_run.c.trigger).where(
                sa.or_(
                    job_run.c.state == "Running",
                    sa.and_(job_run.c.state == "Scheduled", job_run.c.dispatched_at.is_not(None)),
                )
            )
        ).all()
    )


def refusal_for(conn: Connection, job: str, force: bool) -> str | None:
    """Why a manual run of ``job`` may not start at all (M7, C2, versions), or None."""
    if job not in JOB_NAMES:
        raise GimError(f"unknown job '{job}'; jobs are {', '.join(JOB_NAMES)}")
    info = BY_NAME[job]
    if not info.manual and not force:
        return (
            f"{job} is not run manually: it runs on [schedule] {OPTION_OF[job]} when "
            f"{info.enabled_by}=true; an admin may force a run with --force (M7)"
        )
    if job not in BODIES:
        return f"{job} cannot run in this version yet"
    return check_options(store.load_options(conn)).refusal()


def request_run(
    engine: Engine, job: str, actor: str, params: dict[str, Any] | None = None, force: bool = False
) -> Admission:
    """M1: admit a manual run. Returns Running (the run is sent to a worker: call
    :func:`gim_tasks.runtime.beat.send`), Scheduled with the reason, or Rejected."""
    trigger = "forced" if force else "manual"
    with engine.begin() as conn:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ADMISSION_LOCK_KEY)))
        active = _active(conn)
        reason = refusal_for(conn, job, force)
        if reason is None and job == AGGREGATE:
            reply = _aggregation_rules(conn, active, actor, params)
            if reply is not None:
                return reply
        same = [row for row in active if row.job == job]
        if reason is None and same:
            reason = f"already running as run {same[0].id} (S2)"
        if reason is None:
            waiting = conn.execute(
                sa.select(job_run.c.id).where(job_run.c.job == job, job_run.c.state == "Scheduled")
            ).scalar_one_or_none()
            if waiting is not None:
                reason = f"already waiting as run {waiting}"
        values: dict[str, Any] = {
            "job": job,
            "trigger": trigger,
            "actor": actor,
            "params": params or {},
            "forced": force,
        }
        if reason is not None:
            run_id = _record(conn, values, "Rejected", reason)
            return Admission(run_id, "Rejected", reason)
        wait = _wait_reason(active, job)
        if job == AGGREGATE and (params or {}).get("params") and not wait:
            wait_note = "aggregation was not running: started, and the request is queued (M4)"
            run_id = _record(conn, values, "Scheduled", wait_note, dispatched_at=sa.func.now())
            return Admission(run_id, "Running", wait_note)
        run_id = _record(
            conn, values, "Scheduled", wait, dispatched_at=None if wait else sa.func.now()
        )
        return Admission(run_id, "Scheduled" if wait else "Running", wait)


def _aggregation_rules(
    conn: Connection, active: list[sa.Row[Any]], actor: str, params: dict[str, Any] | None
) -> Admission | None:
    """M3 and M4 for Job_AggregateGIM. A re-aggregation request is validated (errors name the
    bad token) and queued; if aggregation runs, that run processes it; if not, aggregation is
    started when allowed, and the reply says what happens to the request."""
    text = (params or {}).get("params", "")
    request = None
    values = {"job": AGGREGATE, "trigger": "manual", "actor": actor, "params": params or {}}
    if text:
        try:
            parsed = parse_params(text)
        except ParamError as error:
            run_id = _record(conn, values, "Rejected", str(error))
            return Admission(run_id, "Rejected", str(error))
        request = conn.execute(
            sa.insert(agg_request)
            .values(params=parsed.as_dict(), requested_by=actor)
            .returning(agg_request.c.id)
        ).scalar_one()
    running = [row for row in active if row.job == AGGREGATE]
    if running and request is not None:
        return Admission(
            running[0].id,
            "Running",
            f"re-aggregation queued as request "
            f"{request}; the running aggregation (run {running[0].id}) processes it",
        )
    options = store.load_options(conn).schedule()
    now = datetime.now(UTC)
    if options.run_aggregates and open_window(options, now, zone(options.timezone)) is None:
        queued = (
            f"; re-aggregation request {request} stays queued for the next window"
            if request is not None
            else ""
        )
        reason = (
            "run-aggregates=true and no aggregation window is open: aggregation runs "
            f"only inside its windows (M3){queued}"
        )
        run_id = _record(conn, values, "Rejected", reason)
        return Admission(run_id, "Rejected", reason)
    return None


def _wait_reason(active: list[sa.Row[Any]], job: str) -> str | None:
    """M5: manual maintenance waits until no other run is active; [beyond] other manual runs
    wait while maintenance runs (exclusive maintenance is never overlapped)."""
    if job == MAINTAIN:
        others = [f"{row.job} run {row.id}" for row in active if row.job != MAINTAIN]
        if others:
            return (
                f"waiting for {', '.join(others)} (M5); scheduled launches will wait for "
                "this maintenance (S13)"
            )
        return None
    maintenance = [row for row in active if row.job == MAINTAIN]
    if maintenance:
        return f"waiting for maintenance run {maintenance[0].id} (S13)"
    return None


def stop_run(engine: Engine, run_id: int, actor: str) -> str:
    """M6: ask a Running run to stop (cooperative; the beat revokes it after a grace period),
    or cancel it when it is still Scheduled. Returns what happened, in words."""
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(job_run).where(job_run.c.id == run_id).with_for_update()
        ).one_or_none()
        if row is None:
            raise GimError(f"run {run_id} does not exist")
        if row.state == "Scheduled":
            return _cancel(conn, row, actor)
        if row.state != "Running":
            raise GimError(
                f"run {run_id} is {row.state}; only Running or Scheduled runs can be stopped"
            )
        conn.execute(
            sa.update(job_run)
            .where(job_run.c.id == run_id)
            .values(
                stop_requested_at=sa.func.coalesce(job_run.c.stop_requested_at, sa.func.now()),
                reason=f"stopped by {actor}",
                ended_by=actor,
            )
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
        row = conn.execute(
            sa.select(job_run).where(job_run.c.id == run_id).with_for_update()
        ).one_or_none()
        if row is None:
            raise GimError(f"run {run_id} does not exist")
        if row.state != "Scheduled":
            raise GimError(
                f"run {run_id} is {row.state}; only Scheduled runs can be "
                "cancelled (use `gim stop` for a Running run)"
            )
        return _cancel(conn, row, actor)


def _cancel(conn: Connection, row: sa.Row[Any], actor: str) -> str:
    conn.execute(
        sa.update(job_run)
        .where(job_run.c.id == row.id, job_run.c.state == "Scheduled")
        .values(
            state="Cancelled",
            ended_at=sa.func.now(),
            ended_by=actor,
            reason=f"cancelled by {actor}",
        )
    )
    return f"run {row.id} ({row.job}): Cancelled"


def list_runs(
    engine: Engine,
    which: str = "all",
    category: str | None = None,
    job: str | None = None,
    limit: int = 50,
    run_id: int | None = None,
) -> list[dict[str, Any]]:
    """Runs newest first: ``running``, ``scheduled``, ``history`` (ended) or ``all``."""
    query = sa.select(job_run).order_by(job_run.c.id.desc()).limit(limit)
    if which == "running":
        query = query.where(job_run.c.state == "Running")
    elif which == "scheduled":
        query = query.where(job_run.c.state == "Scheduled")
    elif which == "history":
        query = query.where(job_run.c.ended_at.is_not(None))
    if category is not None:
        jobs = [name for name, info in BY_NAME.items() if info.category.lower() == category.lower()]
        if not jobs:
            categories = sorted({info.category for info in BY_NAME.values()})
            raise GimError(f"unknown category '{category}'; categories are {', '.join(categories)}")
        query = query.where(job_run.c.job.in_(jobs))
    if job is not None:
        query = query.where(job_run.c.job == job)
    if run_id is not None:
        query = query.where(job_run.c.id == run_id)
    with engine.connect() as conn:
        rows = conn.execute(query).all()

    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return [
        {
            "id": r.id,
            "job": r.job,
            "state": r.state,
            "trigger": r.trigger,
            "actor": r.actor,
            "reason": r.reason,
            "planned_at": iso(r.planned_at),
            "started_at": iso(r.started_at),
            "ended_at": iso(r.ended_at),
            "ended_by": r.ended_by,
            "rows_read": r.rows_read,
            "rows_written": r.rows_written,
            "rows_discarded": r.rows_discarded,
            "warnings": r.warnings,
            "error": r.error,
            "forced": r.forced,
        }
        for r in rows
    ]
