"""The scheduler's view of run state, read from ``job_run`` (for the pure engine)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gim_tasks.db.tables import job_run
from gim_tasks.lifecycle import RunState
from gim_tasks.schedule.firings import RESUME_MARK, firing_id
from gim_tasks.schedule.jobs import AGGREGATE, EXTRACT, TRANSFORM
from gim_tasks.schedule.state import ActiveRun, CycleView, SchedulerState, WaitingRun


def load_state(
    conn: Connection, cursors: Mapping[str, datetime], now: datetime | None = None
) -> SchedulerState:
    """Running runs (and Scheduled ones already sent to a worker, about to run), waiting runs
    oldest first, the newest scheduled ETL cycle, and the operators' holds (P1-P3)."""
    from gim_tasks.runtime import holds, pools

    rows = conn.execute(
        sa.select(
            job_run.c.id,
            job_run.c.job,
            job_run.c.trigger,
            job_run.c.state,
            job_run.c.planned_at,
            job_run.c.dispatched_at,
            job_run.c.stop_requested_at,
            job_run.c.firing_id,
        )
        .where(job_run.c.state.in_((RunState.RUNNING, RunState.SCHEDULED)))
        .order_by(job_run.c.id)
    ).all()
    running, waiting = [], []
    for row in rows:
        if row.state == RunState.RUNNING or row.dispatched_at is not None:
            running.append(
                ActiveRun(
                    row.id,
                    row.job,
                    row.trigger,
                    stopping=row.stop_requested_at is not None,
                    firing_id=row.firing_id,
                )
            )
        else:
            waiting.append(WaitingRun(row.id, row.job, row.trigger, row.planned_at))
    cycle = None
    extract = conn.execute(
        sa.select(job_run.c.planned_at, job_run.c.state)
        .where(
            job_run.c.job == EXTRACT,
            job_run.c.trigger == "scheduled",
            job_run.c.state.not_in((RunState.REJECTED, RunState.SCHEDULED)),
            job_run.c.planned_at.is_not(None),
        )
        .order_by(job_run.c.planned_at.desc())
        .limit(1)
    ).one_or_none()
    if extract is not None:
        transform = conn.execute(
            sa.select(job_run.c.state).where(
                job_run.c.firing_id == firing_id(TRANSFORM, extract.planned_at)
            )
        ).scalar_one_or_none()
        cycle = CycleView(extract.planned_at, extract.state, transform)
    # M3: the newest aggregation run that started, if it was a manual one (or the resumption
    # of one) and was paused for maintenance: it resumes. (ix_job_run_job_created serves it.)
    newest = conn.execute(
        sa.select(
            job_run.c.id,
            job_run.c.state,
            job_run.c.stop_kind,
            job_run.c.trigger,
            job_run.c.firing_id,
        )
        .where(job_run.c.job == AGGREGATE, job_run.c.started_at.is_not(None))
        .order_by(job_run.c.created_at.desc(), job_run.c.id.desc())
        .limit(1)
    ).one_or_none()
    paused = None
    if (
        newest is not None
        and newest.state == RunState.STOPPED
        and newest.stop_kind == "maintenance"
        and (newest.trigger in ("manual", "forced") or RESUME_MARK in (newest.firing_id or ""))
    ):
        paused = int(newest.id)
    return SchedulerState(
        running=tuple(running),
        waiting=tuple(waiting),
        cursors=dict(cursors),
        last_cycle=cycle,
        paused_aggregation=paused,
        holds=holds.load(conn, now or datetime.now(UTC)),
        pools=pools.load(conn),
    )


#: The beat's heartbeat (O2, O5), a Redis hash: ``tick`` = UTC epoch seconds of its last tick
#: (the real clock), ``leader`` = host:pid of the beat that wrote it. Written every tick by the
#: beat; read by the watchdog and ``/metrics``.
BEAT_KEY = "gim:beat"


def text(value: bytes | str) -> str:
    """A Redis reply (bytes from a client without ``decode_responses``) as text."""
    return value.decode() if isinstance(value, bytes) else value


def heartbeat_of(raw: dict[Any, Any]) -> tuple[float | None, str | None]:
    """The beat's last tick (UTC epoch seconds) and who wrote it, from the ``BEAT_KEY`` hash
    as Redis returned it; (None, None) without one."""
    values = {text(key): text(value) for key, value in raw.items()}
    tick = values.get("tick")
    return (float(tick) if tick else None), values.get("leader")
