"""Listing runs (A2) for ``gim jobs``: only ``job_run`` and SQLAlchemy, so the command answers
without loading the manager's admission machinery (cli/common.py)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gim_tasks.db.tables import job_run
from gim_tasks.errors import GimError
from gim_tasks.schedule.jobs import BY_NAME


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
    return [run_record(r) for r in rows]


def iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def run_record(r: Any) -> dict[str, Any]:
    """A run as ``gim jobs --json`` prints it; the web's run dictionary adds to it
    (``gim_tasks.web.views.run_dict``)."""
    return {
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
        "stop_kind": r.stop_kind,  # R4: why a Stopped run stopped
        "in_process": r.in_process,  # M0: ran in the requesting process (gim run --local)
    }
