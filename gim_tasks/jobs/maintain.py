"""Job_MaintainGIM: calendars, partitions ahead, expired partitions, retention (SPEC S4, S5, D2).

Committed steps: every step (and every purge batch) is its own transaction, and the stop token
is checked between them, so a stopped run (S5 preemption, M6) loses nothing and the next run
continues where it left off. Each step is idempotent: it computes what is missing or expired
from the database's current state, not from a record of the previous run.

- calendar: DATE_TIME filled from yesterday to ``date-time-max-days-ahead``; rows computed in
  another zone (``[schedule] timezone`` changed) repopulated; custom calendars likewise.
- partitions ahead: day partitions of every fact table up to ``partitions-days-ahead``.
- expired partitions: fact partitions wholly older than ``days-to-keep-facts`` dropped whole
  (D2: never a row-by-row DELETE on a fact table).
- retention: staging rows already loaded by Transform (behind its mark) and older than
  ``days-to-keep-staging``, discards, run history; deleted in bounded batches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gim_tasks.aggregate.registry import HIERARCHIES
from gim_tasks.aggregate.retention import lock_purge, mark_purged
from gim_tasks.db import calendar, locks
from gim_tasks.db import mart_tables as mart
from gim_tasks.db.partitions import (
    ensure_partitions,
    existing_partitions,
)
from gim_tasks.jobs.base import JobContext
from gim_tasks.jobs.transform import TRAFFIC_SOURCES
from gim_tasks.lifecycle import FINAL_STATES
from gim_tasks.options import store

log = logging.getLogger("gim_tasks.jobs.maintain")

PURGE_BATCH = 10_000


def _today(ctx: JobContext) -> date:
    return ctx.now().date()  # UTC day: partitions are UTC days


def step_calendar(ctx: JobContext, conn: Connection) -> dict[str, object]:
    tz = str(ctx.options.get("schedule", "timezone"))
    now = ctx.now()
    first = calendar.key_of(now - timedelta(days=1))
    last = calendar.key_of(
        now + timedelta(days=int(ctx.options.get("gim-etl", "date-time-max-days-ahead")))
    )
    repopulated = calendar.repopulate(conn, tz)
    added = calendar.fill_range(conn, tz, first, last)
    extra = ctx.options.get("gim-etl", "date-time-extra-time-zones")
    removed = (
        conn.execute(
            sa.delete(mart.date_time_extra).where(
                mart.date_time_extra.c.calendar.not_in(list(extra))
            )
        ).rowcount
        or 0
    )
    extra_added = {zone: calendar.fill_extra(conn, zone, first, last) for zone in extra}
    return {
        "rows_added": added,
        "rows_repopulated": repopulated,
        "custom_calendars": extra_added,
        "custom_rows_removed": removed,
    }


def initialize_calendar(engine: Engine, now: datetime | None = None) -> dict[str, object]:
    """The calendar step on its own, outside any run (``gim db upgrade``): DATE_TIME and the
    custom calendars filled from yesterday to ``date-time-max-days-ahead``. Idempotent."""
    with engine.begin() as conn:
        options = store.load_options(conn)
    at = now or datetime.now(UTC)
    ctx = JobContext(mart=engine, idb_urls=[], options=options, now=lambda: at)
    # Several pods upgrade at once (test_concurrent_upgrades...): one fills the calendar at a
    # time, the others wait and find it filled (the migration lock, released after commit).
    with engine.connect() as conn:
        locks.hold_session(conn, locks.MIGRATION)
        conn.commit()  # the session's lock stays; the calendar is written in a transaction
        try:
            with conn.begin():
                return step_calendar(ctx, conn)
        finally:
            locks.release_session(conn, locks.MIGRATION)
            conn.commit()


def step_partitions_ahead(ctx: JobContext, conn: Connection) -> dict[str, object]:
    today = _today(ctx)
    ahead = int(ctx.options.get("gim-etl", "partitions-days-ahead"))
    days = [today + timedelta(days=n) for n in range(-1, ahead + 1)]
    created = []
    for table in mart.FACTS:
        created += ensure_partitions(conn, table.name, days)
    return {"created": created}


def step_expired_partitions(ctx: JobContext, conn: Connection) -> dict[str, object]:
    keep = int(ctx.options.get("gim-etl", "days-to-keep-facts"))
    oldest_kept = _today(ctx) - timedelta(days=keep)
    locks.hold(conn, locks.PARTITIONS)
    lock_purge(conn, shared=False)  # D5: no rebuild reads holdings while partitions go
    dropped = []
    purged_before = date.min
    for table in mart.FACTS:
        for name in sorted(existing_partitions(conn, table.name)):
            day = datetime.strptime(name.rsplit("_p", 1)[1], "%Y%m%d").date()  # noqa: DTZ007
            if day < oldest_kept:  # the whole day lies before the retention window
                conn.execute(sa.text(f'DROP TABLE "{name}"'))
                dropped.append(name)
                purged_before = max(purged_before, day + timedelta(days=1))
    if dropped:  # D5: in the transaction that drops them, under the purge lock
        mark_purged(conn, "facts", datetime.combine(purged_before, time(0), UTC))
    return {"dropped": dropped, "kept_from": oldest_kept.isoformat()}


def _purge(ctx: JobContext, what: str, statement: str, params: dict[str, object]) -> int:
    """Delete in bounded batches, each its own transaction, checking for stop between them."""
    total = 0
    while True:
        ctx.stop.check()
        with ctx.transaction() as conn:
            deleted = int(
                conn.execute(sa.text(statement), {**params, "n": PURGE_BATCH}).rowcount or 0
            )
        total += deleted
        ctx.progress(f"purge {what}", total, None)
        if deleted < PURGE_BATCH:
            return total


def step_retention(ctx: JobContext) -> dict[str, object]:
    now = ctx.now()

    def cutoff(option: str) -> datetime:
        return now - timedelta(days=int(ctx.options.get("gim-etl", option)))

    purged: dict[str, int] = {}
    for source in TRAFFIC_SOURCES:
        # Only rows Transform has loaded (behind its mark) may go.
        purged[f"stg_{source}"] = _purge(
            ctx,
            f"stg_{source}",
            f"DELETE FROM stg_{source} WHERE ctid IN (SELECT ctid FROM stg_{source} "
            f"WHERE extracted_at < :cutoff AND load_seq <= coalesce((SELECT last_load_seq "
            f"FROM transform_mark WHERE source = 'stg_{source}'), 0) LIMIT :n)",
            {"cutoff": cutoff("days-to-keep-staging")},
        )
    purged["discard"] = _purge(
        ctx,
        "discard",
        "DELETE FROM discard WHERE id IN (SELECT id FROM discard "
        "WHERE discarded_at < :cutoff LIMIT :n)",
        {"cutoff": cutoff("days-to-keep-discards")},
    )
    purged["job_run"] = _purge(
        ctx,
        "job_run",
        "DELETE FROM job_run WHERE id IN (SELECT id FROM job_run "
        "WHERE ended_at < :cutoff AND state = ANY(:final) LIMIT :n)",
        {"cutoff": cutoff("days-to-keep-job-history"), "final": list(FINAL_STATES)},
    )
    # Aggregates below DAY (SUBHOUR, HOUR) older than days-to-keep-aggregates; DAY and above
    # are small and kept. Tables exist once aggregation ran.
    aggregates_cutoff = cutoff("days-to-keep-aggregates")
    with ctx.transaction() as conn:
        existing = set(sa.inspect(conn).get_table_names())
        lock_purge(conn, shared=False)
        # D5: marked before the batches delete (a crash between them leaves the mark ahead of
        # the rows, which only refuses more), so re-aggregation never rebuilds from a level
        # that is partly gone after the retention option is raised again.
        mark_purged(conn, "aggregates", aggregates_cutoff)
    for hierarchy in HIERARCHIES:
        subhour, hour = hierarchy.table("SUBHOUR"), hierarchy.table("HOUR")
        if subhour in existing:
            purged[subhour] = _purge(
                ctx,
                subhour,
                f"DELETE FROM {subhour} WHERE ctid IN (SELECT ctid FROM {subhour} "
                "WHERE date_time_key < extract(epoch FROM CAST(:cutoff AS timestamptz)) LIMIT :n)",
                {"cutoff": aggregates_cutoff},
            )
        if hour in existing:
            purged[hour] = _purge(
                ctx,
                hour,
                f"DELETE FROM {hour} WHERE ctid IN (SELECT ctid FROM {hour} "
                "WHERE bucket < CAST(:cutoff AS timestamptz) AT TIME ZONE :tz LIMIT :n)",
                {"cutoff": aggregates_cutoff, "tz": str(ctx.options.get("schedule", "timezone"))},
            )
    return {"rows_purged": purged}


STEPS: tuple[tuple[str, Callable[[JobContext, Connection], dict[str, object]]], ...] = (
    ("calendar", step_calendar),
    ("partitions_ahead", step_partitions_ahead),
    ("expired_partitions", step_expired_partitions),
)


def run(ctx: JobContext) -> None:
    """Job_MaintainGIM: each step commits on its own; a stop between steps loses nothing."""
    summary: dict[str, object] = {}
    for name, step in STEPS:
        ctx.stop.check()
        with ctx.transaction() as conn:
            summary[name] = step(ctx, conn)
        ctx.counts.summary = dict(summary)
        ctx.progress(f"maintenance: {name}", len(summary), len(STEPS) + 1)
        log.info("maintenance step %s: %s", name, summary[name])
    summary["retention"] = step_retention(ctx)
    ctx.counts.summary = summary
    retention = summary["retention"]
    assert isinstance(retention, dict)
    ctx.counts.written = sum(retention["rows_purged"].values())
