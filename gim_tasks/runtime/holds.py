"""Operators' holds on the plan, stored (SPEC P1-P3, P5): pause and resume, skip one firing,
blackout windows. Every path (``gim pause``, the API, the Scheduled list's buttons) calls these
functions; the beat reads the holds each tick (:func:`load`) and hands them to the exclusivity
gate with the run state, so a held firing is decided like any other (verdicts ``paused``,
``operator-skip``, ``blackout``).

Concurrency: a pause is one row per job (primary key; ``*`` for all), written with ``INSERT
... ON CONFLICT DO UPDATE``, so two operators pausing at once leave one pause (the later
reason). The beat's :func:`expire` deletes a pause whose ``until`` passed with ``DELETE ...
RETURNING`` in its own transaction: of two beats, one resumes it and sends the notice. A pause
opens one ``paused`` incident (its message goes to the job's error subscribers and webhooks);
its end resolves it (the one notice of P1).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from gim_tasks.db.tables import blackout, firing_skip, job_pause, job_run
from gim_tasks.errors import Conflict, GimError, NotFound
from gim_tasks.lifecycle import Condition, Retry, RunState, outcome
from gim_tasks.monitor import audit, incidents
from gim_tasks.schedule import plan
from gim_tasks.schedule.firings import firing_id
from gim_tasks.schedule.holds import GLOBAL, Blackout, Holds, OperatorSkip, Pause
from gim_tasks.schedule.jobs import BY_NAME, JOB_NAMES, STREAMED, TRANSFORM
from gim_tasks.schedule.localtime import wall, zone
from gim_tasks.schedule.options import ScheduleOptions

log = logging.getLogger("gim_tasks.runtime.holds")

#: How far ahead a skip may reach (the plan it is checked against).
SKIP_AHEAD = timedelta(days=35)
#: A skip is forgotten this long after its firing's instant.
SKIP_KEPT = timedelta(days=2)


#: Every hold in one round trip (the beat reads it each tick, issue 34: the tick's budget).
HOLDS = sa.text(
    """
    SELECT (SELECT coalesce(json_agg(p), '[]') FROM job_pause p) AS pauses,
           (SELECT coalesce(json_agg(s), '[]') FROM firing_skip s
             WHERE s.planned_at >= :since) AS skips,
           (SELECT coalesce(json_agg(b ORDER BY b.name), '[]') FROM blackout b) AS blackouts
    """
)


def load(conn: Connection, now: datetime) -> Holds:
    """Every hold in force: pauses, skips of firings not long past, blackout windows."""
    row = conn.execute(HOLDS, {"since": now - SKIP_KEPT}).one()
    pauses = {
        p["job"]: Pause(
            p["job"], p["reason"], p["actor"], _at(p["until"]), p["source"], _at(p["paused_at"])
        )
        for p in row.pauses
    }
    skips = {
        k["firing_id"]: OperatorSkip(k["firing_id"], k["reason"], k["actor"]) for k in row.skips
    }
    windows = tuple(_blackout(_Row(b)) for b in row.blackouts)
    return Holds(pauses, skips, windows)


def _at(text: str | None) -> datetime | None:
    """A timestamptz from json_agg (ISO text with an offset)."""
    return datetime.fromisoformat(text) if text else None


def _blackout(row: Any) -> Blackout:
    return Blackout(
        row.name, row.kind, row.reason, tuple(row.jobs), row.starts, row.ends, row.weekly, row.days
    )


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise GimError("a reason is required (--reason TEXT): it is shown with every held firing")
    if len(reason) > 500:
        raise GimError("the reason is longer than 500 characters")
    return reason


def checked_instant(value: datetime, what: str) -> datetime:
    """An aware instant from 1970 to 2999 in UTC (the range every date of the API takes);
    a GimError naming it otherwise (never an overflow, issue 41)."""
    if value.tzinfo is None:
        raise GimError(f"{what} needs a UTC offset, e.g. 2026-12-07T06:00+01:00")
    try:
        instant = value.astimezone(UTC)
    except OverflowError:
        instant = None
    if instant is None or not 1970 <= instant.year <= 2999:
        raise GimError(f"{what} {value.isoformat()} is not an instant from 1970 to 2999")
    return instant


def _pausable(job: str) -> None:
    if job not in JOB_NAMES:
        raise NotFound(f"unknown job '{job}'; jobs are {', '.join(JOB_NAMES)}")
    if job == TRANSFORM:
        raise GimError(
            f"{TRANSFORM} has no firings of its own (it follows each scheduled Extract, S3): "
            f"pause {STREAMED[0].name} to hold ETL cycles"
        )


@dataclass(frozen=True)
class Paused:
    job: str  # a job, or "*"
    until: datetime | None
    stopped: tuple[int, ...]  # runs asked to stop (--stop)


def pause(
    engine: Engine,
    job: str | None,
    reason: str,
    actor: str,
    until: datetime | None = None,
    stop: bool = False,
    now: datetime | None = None,
    source: str = "operator",
) -> Paused:
    """P1: pause ``job`` (None: every job) until ``until`` or a resume. Running runs finish
    (drain) or, with ``stop``, are asked to stop (stop kind ``operator``, M6)."""
    now = now or datetime.now(UTC)
    reason = _reason(reason)
    if job is not None:
        _pausable(job)
    if until is not None:
        until = checked_instant(until, "until")
        if until <= now:
            raise GimError(f"until {until.isoformat()} is not in the future")
    key = job or GLOBAL
    with engine.begin() as conn:
        before = _pause_of(conn, key)
        values = {"job": key, "reason": reason, "actor": actor, "until": until, "source": source}
        statement = insert(job_pause).values(**values, paused_at=now)
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["job"],
                set_={**{k: statement.excluded[k] for k in values}, "paused_at": now},
            )
        )
        words = f"paused by {actor}: {reason}" + (
            f" (until {until.astimezone(UTC):%Y-%m-%d %H:%M} UTC)" if until else ""
        )
        incidents.ensure_open(conn, _incident_job(key), Condition.PAUSED, words)
        audit.record(
            conn,
            audit.Action.PAUSE,
            key,
            actor,
            reason=reason,
            before=before,
            after={"until": until, "stop": stop},
        )
        running = conn.execute(
            sa.select(job_run.c.id).where(
                job_run.c.state == RunState.RUNNING,
                *([job_run.c.job == job] if job else []),
            )
        ).scalars()
        running_ids = tuple(running)
    stopped: tuple[int, ...] = ()
    if stop:
        from gim_tasks.runtime.manager import stop_run

        for run_id in running_ids:
            stop_run(engine, run_id, actor)
        stopped = running_ids
    log.info("%s paused by %s: %s", key, actor, reason)
    return Paused(key, until, stopped)


def _pause_of(conn: Connection, key: str) -> dict[str, Any] | None:
    row = conn.execute(
        sa.select(job_pause.c.reason, job_pause.c.actor, job_pause.c.until).where(
            job_pause.c.job == key
        )
    ).one_or_none()
    return None if row is None else dict(row._mapping)


def _incident_job(key: str) -> str:
    return incidents.SCHEDULER if key == GLOBAL else key


def resume(engine: Engine, job: str | None, actor: str) -> str:
    """P1: end the pause of ``job`` (None: the global pause only; each job's own stays)."""
    key = job or GLOBAL
    with engine.begin() as conn:
        gone = conn.execute(
            sa.delete(job_pause)
            .where(job_pause.c.job == key)
            .returning(job_pause.c.reason, job_pause.c.actor, job_pause.c.until)
        ).one_or_none()
        if gone is None:
            paused = conn.execute(sa.select(job_pause.c.job).order_by("job")).scalars().all()
            listed = ", ".join("all jobs" if p == GLOBAL else p for p in paused) or "nothing"
            what = "every job (--all)" if key == GLOBAL else key
            raise Conflict(f"{what} is not paused; paused: {listed}")
        incidents.resolve(conn, Condition.PAUSED, jobs=[_incident_job(key)])
        audit.record(conn, audit.Action.RESUME, key, actor, before=dict(gone._mapping))
    log.info("%s resumed by %s", key, actor)
    return f"{'all jobs' if key == GLOBAL else key} resumed by {actor}"


def expire(conn: Connection, now: datetime) -> list[str]:
    """P1 ``until``: end every pause whose instant came (the beat, each tick); one notice
    each (the ``paused`` incident resolves)."""
    rows = conn.execute(
        sa.delete(job_pause)
        .where(job_pause.c.until.is_not(None), job_pause.c.until <= now)
        .returning(job_pause.c.job, job_pause.c.reason, job_pause.c.actor, job_pause.c.until)
    ).all()
    ended = [row.job for row in rows]
    if ended:
        incidents.resolve(conn, Condition.PAUSED, jobs=[_incident_job(key) for key in ended])
        for row in rows:
            before = {"reason": row.reason, "actor": row.actor, "until": row.until}
            audit.record(conn, audit.Action.PAUSE_ENDED, row.job, "gim-tasks", before=before)
        log.info("pause ended (until reached): %s", ", ".join(ended))
    return ended


def skip(
    engine: Engine,
    options: ScheduleOptions,
    job: str,
    reason: str,
    actor: str,
    at: datetime | None = None,
    firing: str | None = None,
    now: datetime | None = None,
) -> str:
    """P2: skip one future firing of ``job``, named by its instant or its firing id. Refused
    for a past or unknown firing, naming the next planned instants."""
    now = now or datetime.now(UTC)
    reason = _reason(reason)
    if job not in JOB_NAMES:
        raise NotFound(f"unknown job '{job}'; jobs are {', '.join(JOB_NAMES)}")
    firing = (firing or "").strip() or None  # an empty id names nothing
    if (at is None) == (firing is None):
        raise GimError("name the firing: --at INSTANT or --firing FIRING_ID (one of them)")
    if at is not None:
        at = checked_instant(at, "at")
    tz = zone(options.timezone)
    upcoming = [
        event.at
        for event in plan.plan(options, now, now + SKIP_AHEAD)
        if event.job == job and event.event == "start"
    ]
    wanted = firing if firing is not None else firing_id(job, at)  # type: ignore[arg-type]
    planned = next((instant for instant in upcoming if firing_id(job, instant) == wanted), None)
    if planned is None:
        shown = ", ".join(wall(i, tz).strftime("%Y-%m-%d %H:%M") for i in upcoming[:5]) or "none"
        raise GimError(
            f"{job} has no future firing {wanted} (a past or unplanned instant cannot be "
            f"skipped); its next planned firings ({options.timezone}): {shown}"
        )
    with engine.begin() as conn:
        done = conn.execute(
            insert(firing_skip)
            .values(firing_id=wanted, job=job, planned_at=planned, reason=reason, actor=actor)
            .on_conflict_do_nothing()
            .returning(firing_skip.c.firing_id)
        ).scalar_one_or_none()
        if done is not None:
            after = {"job": job, "planned_at": planned}
            audit.record(conn, audit.Action.SKIP, wanted, actor, reason=reason, after=after)
    if done is None:
        raise Conflict(f"firing {wanted} is already skipped")
    return wanted


def add_blackout(engine: Engine, window: Blackout, actor: str) -> None:
    """P3: store a named window (checked: its form, its jobs, a unique name)."""
    if not window.name.strip() or len(window.name) > 80:
        raise GimError("a blackout needs a name of 1 to 80 characters")
    _reason(window.reason)
    try:
        window.check()
    except ValueError as error:
        raise GimError(str(error)) from None
    unknown = [job for job in window.jobs if job not in BY_NAME]
    if unknown:
        raise GimError(f"unknown job(s) {', '.join(unknown)}; jobs are {', '.join(JOB_NAMES)}")
    with engine.begin() as conn:
        added = conn.execute(
            insert(blackout)
            .values(
                name=window.name,
                kind=window.kind,
                starts=window.starts,
                ends=window.ends,
                weekly=window.weekly,
                days=window.days,
                jobs=list(window.jobs),
                reason=window.reason.strip(),
                actor=actor,
            )
            .on_conflict_do_nothing()
            .returning(blackout.c.name)
        ).scalar_one_or_none()
        if added is not None:
            audit.record(
                conn,
                audit.Action.BLACKOUT_ADD,
                window.name,
                actor,
                reason=window.reason.strip(),
                after={"describe": window.describe(), "jobs": list(window.jobs)},
            )
    if added is None:
        raise Conflict(f"a blackout named '{window.name}' exists; remove it first")


def remove_blackout(engine: Engine, name: str, actor: str) -> None:
    with engine.begin() as conn:
        gone = conn.execute(
            sa.delete(blackout).where(blackout.c.name == name).returning(blackout)
        ).one_or_none()
        if gone is not None:
            before = {"describe": _blackout(gone).describe(), "reason": gone.reason}
            audit.record(conn, audit.Action.BLACKOUT_REMOVE, name, actor, before=before)
    if gone is None:
        raise NotFound(f"no blackout named '{name}'")


def listing(engine: Engine, now: datetime | None = None) -> dict[str, Any]:
    """Pauses, skips and blackouts, as ``gim holds --json`` and ``GET /api/holds`` show them."""
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        pauses = [dict(row._mapping) for row in conn.execute(sa.select(job_pause).order_by("job"))]
        skips = [
            dict(row._mapping)
            for row in conn.execute(
                sa.select(firing_skip)
                .where(firing_skip.c.planned_at >= now)
                .order_by(firing_skip.c.planned_at)
            )
        ]
        windows = [dict(row._mapping) for row in conn.execute(sa.select(blackout).order_by("name"))]
    for window in windows:
        window["describe"] = _blackout(_Row(window)).describe()
    return {"pauses": pauses, "skips": skips, "blackouts": windows}


class _Row:
    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def pause_on_failure(conn: Connection, thresholds: dict[str, int], now: datetime) -> list[str]:
    """P5: pause each job whose last N ended runs all failed (R4), once (not when paused
    already). Returns the jobs paused."""
    paused = []
    held = set(conn.execute(sa.select(job_pause.c.job)).scalars())
    for job, count in thresholds.items():
        if job in held:
            continue
        rows = conn.execute(
            sa.select(job_run.c.id, job_run.c.state, job_run.c.stop_kind, job_run.c.skip)
            .where(
                job_run.c.job == job,
                job_run.c.ended_at.is_not(None),
                job_run.c.state != RunState.CANCELLED,
                sa.or_(job_run.c.skip.is_(None), job_run.c.skip != "rule"),
                sa.or_(job_run.c.retry.is_(None), job_run.c.retry == Retry.FINAL),  # L3
            )
            .order_by(job_run.c.ended_at.desc(), job_run.c.id.desc())
            .limit(count)
        ).all()
        if len(rows) < count or any(
            outcome(row.state, row.stop_kind, row.skip) != "failure" for row in rows
        ):
            continue
        reason = f"{count} consecutive failures (last: run {rows[0].id})"
        conn.execute(
            insert(job_pause)
            .values(job=job, reason=reason, actor="gim-tasks", source="failures", paused_at=now)
            .on_conflict_do_nothing()
        )
        incidents.ensure_open(conn, job, Condition.PAUSED, f"paused by gim-tasks: {reason} (P5)")
        audit.record(conn, audit.Action.PAUSE_ON_FAILURE, job, "gim-tasks", reason=reason)
        paused.append(job)
        log.warning("%s paused: %s (P5)", job, reason)
    return paused
