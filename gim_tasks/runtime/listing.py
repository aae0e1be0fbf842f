"""Listing runs (A2) for ``gim jobs``: one query through psycopg, without SQLAlchemy (170 ms
of imports at every start) or the manager's admission machinery (issue 25, cli/common.py)."""

from __future__ import annotations

from typing import Any

from gim_tasks.db.sessions import (
    CONNECT_TIMEOUT_SECONDS,
    connection_problem,
    libpq_url,
    session_name,
)
from gim_tasks.errors import GimError, ServiceUnavailable
from gim_tasks.lifecycle import RunState
from gim_tasks.schedule.jobs import BY_NAME
from gim_tasks.settings import redact


def list_runs(
    url: str,
    which: str = "all",
    category: str | None = None,
    job: str | None = None,
    limit: int = 50,
    run_id: int | None = None,
) -> list[dict[str, Any]]:
    """Runs newest first: ``running``, ``scheduled``, ``history`` (ended), ``skipped`` (firings
    a rule skipped, which the others leave out) or ``all``, from the Info Mart at ``url`` (a
    ``postgresql://`` URL, as GIM_DATABASE_URL)."""
    import psycopg
    from psycopg.rows import namedtuple_row

    where: list[str] = []
    args: list[Any] = []
    if which in ("running", "scheduled"):
        where.append("state = %s")
        args.append(RunState.RUNNING if which == "running" else RunState.SCHEDULED)
    elif which == "history":
        where.append("ended_at IS NOT NULL")
    # R4: skips a rule requires (S1, S2, S6, S9, S12) are listed only when asked for.
    if which == "skipped":
        where.append("skip = 'rule'")
    elif run_id is None:
        where.append("skip IS DISTINCT FROM 'rule'")
    if category is not None:
        jobs = [name for name, info in BY_NAME.items() if info.category.lower() == category.lower()]
        if not jobs:
            categories = sorted({info.category for info in BY_NAME.values()})
            raise GimError(f"unknown category '{category}'; categories are {', '.join(categories)}")
        where.append("job = ANY(%s)")
        args.append(jobs)
    if job is not None:
        where.append("job = %s")
        args.append(job)
    if run_id is not None:
        where.append("id = %s")
        args.append(run_id)
    condition = f"WHERE {' AND '.join(where)} " if where else ""
    query = f"SELECT * FROM job_run {condition}ORDER BY id DESC LIMIT %s"  # noqa: S608
    try:
        with psycopg.connect(
            libpq_url(url),
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=session_name(),
            row_factory=namedtuple_row,
        ) as conn:
            rows = conn.execute(query, [*args, limit]).fetchall()
    except psycopg.OperationalError as error:
        raise ServiceUnavailable(
            f"Info Mart database {redact(url)} is unreachable: {connection_problem(error)}"
        ) from None
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
        "skip": r.skip,  # R4: a firing recorded without starting: rule or blocked (C2)
        "in_process": r.in_process,  # M0: ran in the requesting process (gim run --local)
        # L3: attempt k of max_attempts; retry: pending, retried or final; the attempt it repeats
        "attempt": r.attempt,
        "max_attempts": r.max_attempts,
        "retry": r.retry,
        "retry_of": r.retry_of,
    }
