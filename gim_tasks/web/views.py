"""What the Monitor Jobs pages and the API show (SPEC A1, A2, A4), as plain data, so that the
HTML pages and the JSON API cannot disagree."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gim_tasks.db.mart_tables import discard
from gim_tasks.db.tables import RUN_STATES, job_run
from gim_tasks.errors import GimError
from gim_tasks.lifecycle import FAILURE, outcome
from gim_tasks.options import store
from gim_tasks.options.values import Options
from gim_tasks.runtime.listing import iso, run_record
from gim_tasks.schedule.engine import RESTART, SCHEDULED
from gim_tasks.schedule.jobs import (
    AGGREGATE,
    BY_NAME,
    CATEGORIES,
    EXPORT,
    EXTRACT,
    MAINTAIN,
    TRANSFORM,
    UPDATE_STATS,
)
from gim_tasks.schedule.localtime import zone
from gim_tasks.schedule.plan import next_run_table
from gim_tasks.web.notify import notifications_of

_ETL = ("timezone", "run-scheduler", "etl-start-time", "etl-end-time", "etl-frequency")
#: The [schedule] options that make up each job's schedule: who changed one last is the
#: schedule's Creator (A1); none changed: '-' (the built-in schedule).
SCHEDULE_OPTIONS: dict[str, tuple[str, ...]] = {
    EXTRACT: _ETL,
    TRANSFORM: _ETL,
    AGGREGATE: (
        "timezone",
        "run-scheduler",
        "run-aggregates",
        "aggregate-schedule",
        "aggregate-duration",
    ),
    MAINTAIN: ("timezone", "run-scheduler", "run-maintain", "maintain-start-time"),
    UPDATE_STATS: ("timezone", "run-scheduler", "run-update-stats", "update-stats-schedule"),
    EXPORT: ("timezone", "run-scheduler", "run-export", "export-schedule"),
}


def check_category(category: str | None) -> str | None:
    if not category:
        return None
    for known in CATEGORIES:
        if known.lower() == category.lower():
            return known
    raise GimError(f"unknown category '{category}'; categories are {', '.join(CATEGORIES)}")


def creator(options: Options, job: str) -> str:
    changes = [
        options.changes[("schedule", name)]
        for name in SCHEDULE_OPTIONS[job]
        if ("schedule", name) in options.changes
    ]
    return max(changes, key=lambda change: change.at).actor if changes else "-"


def scheduled_jobs(
    engine: Engine, now: datetime, category: str | None = None
) -> list[dict[str, Any]]:
    """A1: one row per job: active, name, category, creator, schedule in words, next run."""
    wanted = check_category(category)
    with engine.connect() as conn:
        options = store.load_options(conn)
    rows = []
    for row in next_run_table(options.schedule(), now):
        info = BY_NAME[row.job]
        if wanted and info.category != wanted:
            continue
        rows.append(
            {
                "name": row.job,
                "category": info.category,
                "active": row.active,
                "creator": creator(options, row.job),
                "schedule": row.schedule,
                "next_run": row.next_run.isoformat() if row.next_run else None,
                "manual": info.manual,
            }
        )
    return rows


def schedule_zone(engine: Engine) -> str:
    with engine.connect() as conn:
        return store.load_options(conn).schedule().timezone


def history_filter(
    job: str | None, category: str | None, state: str | None, day: str | None, tz_name: str
) -> list[sa.ColumnElement[bool]]:
    """A2 filters; every bad value is named with what is allowed."""
    where: list[sa.ColumnElement[bool]] = []
    if job:
        if job not in BY_NAME:
            raise GimError(f"unknown job '{job}'; jobs are {', '.join(BY_NAME)}")
        where.append(job_run.c.job == job)
    known = check_category(category)
    if known:
        where.append(job_run.c.job.in_([n for n, i in BY_NAME.items() if i.category == known]))
    if state:
        if state not in RUN_STATES:
            raise GimError(f"unknown state '{state}'; states are {', '.join(RUN_STATES)}")
        where.append(job_run.c.state == state)
    if day:
        try:
            first = date.fromisoformat(day)
        except ValueError:
            raise GimError(f"date '{day}' is not YYYY-MM-DD") from None
        tz = zone(tz_name)
        begin = datetime.combine(first, time(), tz)
        end = datetime.combine(first + timedelta(days=1), time(), tz)
        where.append(sa.and_(job_run.c.created_at >= begin, job_run.c.created_at < end))
    return where


def run_dict(r: Any) -> dict[str, Any]:
    """A run for the pages and the API: ``gim jobs``'s record and what the web shows more."""
    duration = None
    if r.started_at is not None and r.ended_at is not None:
        duration = round((r.ended_at - r.started_at).total_seconds(), 3)
    return {
        **run_record(r),
        "category": BY_NAME[r.job].category if r.job in BY_NAME else None,
        "params": r.params,
        "created_at": iso(r.created_at),
        "duration_seconds": duration,
        "worker": r.worker,
        "stop_requested": r.stop_requested_at is not None,
        "summary": r.summary,
        "outcome": outcome(r.state, r.stop_kind),  # R4
    }


def runs(
    engine: Engine,
    which: str = "all",
    job: str | None = None,
    category: str | None = None,
    state: str | None = None,
    day: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Runs newest first: ``running``, ``scheduled``, ``history`` (ended) or ``all``."""
    where = history_filter(job, category, state, day, schedule_zone(engine) if day else "UTC")
    if which == "running":
        where.append(job_run.c.state == "Running")
    elif which == "scheduled":
        where.append(job_run.c.state == "Scheduled")
    elif which == "history":
        where.append(job_run.c.ended_at.is_not(None))
    elif which != "all":
        raise GimError(f"unknown list '{which}'; use running, scheduled, history or all")
    query = sa.select(job_run).where(*where).order_by(job_run.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [run_dict(r) for r in conn.execute(query).all()]


def run_detail(engine: Engine, run_id: int, discards: int = 100) -> dict[str, Any] | None:
    """A2 detail: the run, the discards it produced (first ``discards``) and its mails."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(job_run).where(job_run.c.id == run_id)).one_or_none()
        if row is None:
            return None
        detail = run_dict(row)
        detail["discard_count"] = conn.execute(
            sa.select(sa.func.count()).select_from(discard).where(discard.c.run_id == run_id)
        ).scalar_one()
        detail["discards"] = [
            {
                "source_table": d.source_table,
                "source_id": d.source_id,
                "idb_id": d.idb_id,
                "reason": d.reason,
            }
            for d in conn.execute(
                sa.select(discard)
                .where(discard.c.run_id == run_id)
                .order_by(discard.c.id)
                .limit(discards)
            ).all()
        ]
        detail["notifications"] = [
            {
                "recipient": n["recipient"],
                "state": n["state"],
                "attempts": n["attempts"],
                "last_error": n["last_error"],
                "sent_at": n["sent_at"].isoformat() if n["sent_at"] else None,
            }
            for n in notifications_of(conn, run_id)
        ]
    return detail


def summary(engine: Engine, days: int, now: datetime | None = None) -> dict[str, Any]:
    """A4: the last ``days`` days per category: scheduled runs ended (manual runs are not
    counted, as in Alma), failures by R4 (a planned stop is a success, an operator's stop
    neither), the failed runs."""
    if not 1 <= days <= 366:
        raise GimError(f"days must be 1-366, not {days}")
    since = (now or datetime.now(UTC)) - timedelta(days=days)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                job_run.c.id,
                job_run.c.job,
                job_run.c.state,
                job_run.c.stop_kind,
                job_run.c.ended_at,
                job_run.c.error,
            )
            .where(
                job_run.c.ended_at >= since,
                job_run.c.state.not_in(("Rejected", "Cancelled")),
                job_run.c.trigger.in_((SCHEDULED, RESTART)),
            )
            .order_by(job_run.c.id.desc())
        ).all()
    categories = {c: {"category": c, "runs": 0, "failures": 0, "failed": []} for c in CATEGORIES}
    for row in rows:
        entry: dict[str, Any] = categories[BY_NAME[row.job].category]
        entry["runs"] += 1
        if outcome(row.state, row.stop_kind) == FAILURE:
            entry["failures"] += 1
            entry["failed"].append(
                {
                    "id": row.id,
                    "job": row.job,
                    "state": row.state,
                    "ended_at": row.ended_at.isoformat(),
                    "error": row.error,
                }
            )
    return {"days": days, "since": since.isoformat(), "categories": list(categories.values())}
