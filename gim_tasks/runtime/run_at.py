"""Runs planned at a set time (SPEC P4, Alma's "Scheduled Manual Jobs"): ``gim run JOB --at``,
``POST /api/runs`` with ``at``, the Run Job page.

A planned run is a firing of its own: ``at:JOB:ISO`` in ``run_at`` and in the firing ledger
(stream ``at``), so the watchdog judges it like any other (missed when no beat was there) and
the Timeline shows it. At its instant the beat admits it through the one decision of every
manual start (M0, :func:`gim_tasks.runtime.manager.request_run`, via ``gim run --at``), with
the requester as actor; the run carries the firing id, unique in ``job_run``, so two beats
start it once (S11). A local time inside a DST gap is the first instant after it (S10). If the
beat was down at its instant, S12 decides: the same local day it still runs, later it is
``missed``. Before its instant it can be cancelled (verdict ``cancelled``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine

from gim_tasks.db.tables import firing, run_at
from gim_tasks.errors import Conflict, GimError, NotFound
from gim_tasks.lifecycle import RunState, Verdict, Via
from gim_tasks.monitor import audit
from gim_tasks.monitor.ledger import AT_STREAM, timeliness
from gim_tasks.runtime.holds import checked_instant
from gim_tasks.schedule.holds import local_time
from gim_tasks.schedule.jobs import BY_NAME, JOB_NAMES
from gim_tasks.schedule.localtime import resolve, wall, zone

log = logging.getLogger("gim_tasks.runtime.run_at")

#: How far ahead a run may be planned.
AHEAD = timedelta(days=366)
#: S12: a planned run handled later than this after its instant ran while the beat was down.
LATE_AFTER = timedelta(minutes=2)


def at_id(job: str, instant: datetime) -> str:
    return f"at:{job}:{instant.astimezone(UTC).isoformat()}"


def instant_of(text: str, tz_name: str) -> datetime:
    """An ISO instant with its offset, or a local time ``YYYY-MM-DDTHH:MM`` of the schedule's
    zone (S10: inside a DST gap, the first instant after it; in a repeated hour, the first)."""
    text = text.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is not None and parsed.tzinfo is not None:
        return parsed.astimezone(UTC)
    try:
        return resolve(local_time(text), zone(tz_name)).astimezone(UTC)
    except ValueError:
        raise GimError(
            f"--at '{text}' is neither an ISO instant with its offset nor a local time "
            f"YYYY-MM-DDTHH:MM of the schedule's zone ({tz_name})"
        ) from None


def plan_run(
    engine: Engine,
    job: str,
    at: datetime,
    reason: str,
    actor: str,
    params: str = "",
    force: bool = False,
    now: datetime | None = None,
) -> str:
    """P4: plan a manual run of ``job`` at ``at``; returns its firing id. Refused for an
    unknown job, a past instant, no reason, parameters a job does not take."""
    now = now or datetime.now(UTC)
    if job not in JOB_NAMES:
        raise NotFound(f"unknown job '{job}'; jobs are {', '.join(JOB_NAMES)}")
    if not (reason or "").strip():
        raise GimError("a reason is required (--reason TEXT): it is shown with the planned run")
    at = checked_instant(at, "--at")  # aware, 1970 to 2999: never an overflow
    if at <= now:
        raise GimError(f"--at {at.isoformat()} is not in the future")
    if at > now + AHEAD:
        raise GimError(f"--at {at.isoformat()} is more than {AHEAD.days} days ahead")
    if not BY_NAME[job].manual and not force:
        raise GimError(f"{job} is not run manually; an admin may plan a forced run (M7)")
    if params.strip():
        from gim_tasks.aggregate.params import ParamError, parse

        if BY_NAME[job].exclusivity != "aggregation":
            raise GimError(f"{job} takes no parameters (M4)")
        try:
            parse(params)
        except ParamError as error:
            raise GimError(str(error)) from None
    fid = at_id(job, at)
    with engine.begin() as conn:
        added = conn.execute(
            insert(run_at)
            .values(
                firing_id=fid,
                job=job,
                at=at,
                params=params.strip(),
                force=force,
                reason=reason.strip(),
                actor=actor,
            )
            .on_conflict_do_nothing()
            .returning(run_at.c.firing_id)
        ).scalar_one_or_none()
        if added is None:
            raise Conflict(f"{job} is already planned at {at.isoformat()} ({fid})")
        conn.execute(
            insert(firing)
            .values(firing_id=fid, stream=AT_STREAM, job=job, planned_at=at)
            .on_conflict_do_nothing()
        )
        audit.record(
            conn,
            audit.Action.PLAN_RUN,
            fid,
            actor,
            reason=reason.strip(),
            after={"job": job, "at": at, "params": params.strip(), "forced": force},
        )
    return fid


def cancel_planned(engine: Engine, fid: str, actor: str) -> str:
    """P4: cancel a planned run before its instant (verdict ``cancelled``)."""
    with engine.begin() as conn:
        row = conn.execute(
            sa.update(run_at)
            .where(run_at.c.firing_id == fid, run_at.c.state == "planned")
            .values(state="cancelled")
            .returning(run_at.c.job)
        ).one_or_none()
        if row is None:
            known = conn.execute(
                sa.select(run_at.c.state).where(run_at.c.firing_id == fid)
            ).scalar_one_or_none()
            if known is None:
                raise NotFound(f"no run planned as {fid} (gim run --at lists them: gim holds)")
            raise Conflict(f"{fid} is {known}: only a planned run can be cancelled")
        conn.execute(
            sa.update(firing)
            .where(firing.c.firing_id == fid, firing.c.verdict.is_(None))
            .values(
                verdict=Verdict.CANCELLED, decided_at=sa.func.now(), reason=f"cancelled by {actor}"
            )
        )
        audit.record(conn, audit.Action.CANCEL_PLANNED, fid, actor, before={"job": row.job})
    return f"{fid} cancelled by {actor}"


def planned(engine: Engine) -> list[dict[str, Any]]:
    """The runs planned and not started yet, soonest first (the Scheduled page's list)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(run_at).where(run_at.c.state == "planned").order_by(run_at.c.at)
        ).all()
    return [dict(row._mapping) for row in rows]


@dataclass(frozen=True)
class Started:
    firing_id: str
    run_id: int | None
    state: str
    reason: str | None


def start_due(engine: Engine, app: Any, now: datetime, tz_name: str, grace: float) -> list[Started]:
    """The beat, each tick: admit every planned run whose instant came (M0), or judge it
    missed (S12: the beat was down past its day). Cheap when none is due: one indexed query."""
    from gim_tasks.runtime.beat import send
    from gim_tasks.runtime.manager import InvalidRequest, request_run

    with engine.connect() as conn:
        due = conn.execute(
            sa.select(run_at)
            .where(run_at.c.state == "planned", run_at.c.at <= now)
            .order_by(run_at.c.at)
        ).all()
    tz, done = zone(tz_name), []
    for row in due:
        if now - row.at > LATE_AFTER and wall(row.at, tz).date() != wall(now, tz).date():
            reason = "missed while the scheduler was down on an earlier day (S12)"
            _settle(engine, row.firing_id, "missed", None, Verdict.MISSED, reason, now, row.at)
            done.append(Started(row.firing_id, None, "missed", reason))
            continue
        try:
            admission = request_run(
                engine, row.job, row.actor, row.params or None, row.force, via=Via.AT,
                now=now, firing_id=row.firing_id,
            )  # fmt: skip
        except InvalidRequest as error:  # started by another beat, or no longer valid
            log.warning("planned run %s: %s", row.firing_id, error)
            _settle(
                engine, row.firing_id, "started", None, Verdict.SKIPPED, str(error), now, row.at
            )
            continue
        if admission.state == RunState.RUNNING and app is not None:
            send(app, row.job, admission.run_id)
        lag = (now - row.at).total_seconds()
        verdict = (
            Verdict.SKIPPED if admission.state == RunState.REJECTED else timeliness(lag, grace)
        )
        reason = admission.reason or f"planned by {row.actor}: {row.reason} (P4)"
        _settle(engine, row.firing_id, "started", admission.run_id, verdict, reason, now, row.at)
        done.append(Started(row.firing_id, admission.run_id, admission.state, admission.reason))
    return done


def _settle(
    engine: Engine,
    fid: str,
    state: str,
    run_id: int | None,
    verdict: Verdict,
    reason: str,
    now: datetime,
    at: datetime,
) -> None:
    """The planned run's state and its ledger verdict (the first verdict stands: the watchdog
    may have said missed while the beat was down)."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(run_at).where(run_at.c.firing_id == fid).values(state=state, run_id=run_id)
        )
        conn.execute(
            sa.update(firing)
            .where(firing.c.firing_id == fid)
            .values(
                verdict=sa.func.coalesce(firing.c.verdict, verdict),
                decided_at=sa.func.coalesce(firing.c.decided_at, now),
                lag_seconds=sa.func.coalesce(firing.c.lag_seconds, (now - at).total_seconds()),
                reason=sa.func.coalesce(firing.c.reason, reason),
                run_id=run_id,
            )
        )
