"""Job_AggregateGIM: keeps the aggregate tables current from the facts, continuously (S7, M4).

Loop: first the oldest queued re-aggregation request (M4), else a batch of intervals Transform
marked as changed (``agg_pending``); each is one transaction that rewrites the affected rows of
every level and removes what it consumed, so a crash or stop loses nothing and a reader never
sees a range empty. When nothing is pending it sleeps briefly; it checks for stop between
batches. ``once`` (``gim aggregate once``) returns when the queue is empty.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gim_tasks.aggregate.compute import (
    close_intervals,
    ensure_tables,
    keys_for_days,
    open_intervals,
    rebuild,
)
from gim_tasks.aggregate.params import Reaggregation
from gim_tasks.aggregate.registry import BY_NAME, HIERARCHIES
from gim_tasks.aggregate.retention import load_holdings, lock_purge
from gim_tasks.aggregate.safety import effective_range
from gim_tasks.aggregate.safety import refusal as destroys
from gim_tasks.db import locks
from gim_tasks.jobs.base import JobContext
from gim_tasks.schedule.localtime import wall, zone

log = logging.getLogger("gim_tasks.jobs.aggregate")

BATCH_INTERVALS = 200
IDLE_SECONDS = 2.0


def _request(ctx: JobContext, conn: Connection) -> dict[str, Any] | None:
    row = conn.execute(
        sa.text(
            "SELECT id, params FROM agg_request WHERE done_at IS NULL ORDER BY id LIMIT 1 "
            "FOR UPDATE SKIP LOCKED"
        )
    ).one_or_none()
    if row is None:
        return None
    request = Reaggregation.from_dict(row.params)
    now = ctx.now()
    tz = zone(str(ctx.options.get("schedule", "timezone")))
    today = wall(now, tz).date()
    # D5 again at processing: maintenance may have purged while the request waited for its
    # window. The purge lock, taken shared here until this transaction commits, keeps
    # maintenance from dropping partitions between this check and the rebuild.
    holdings = load_holdings(conn, ctx.options, now, lock=True)
    if (why := destroys(request, holdings, tz, today)) is not None:
        log.warning("re-aggregation request %s refused: %s", row.id, why)
        conn.execute(
            sa.text(
                "UPDATE agg_request SET done_at = now(), run_id = :run, refused = :why "
                "WHERE id = :id"
            ),
            {"run": ctx.run_id, "id": row.id, "why": why},
        )
        return {"request": row.id, "rows": 0, "refused": why}
    start, end = effective_range(request, today)
    written = 0
    keys = open_intervals(conn, *keys_for_days(start, end)) if start <= end else None
    if keys is not None:
        for name in request.hierarchies:
            written += rebuild(conn, BY_NAME[name], keys, request.level)
        close_intervals(conn)
    conn.execute(
        sa.text("UPDATE agg_request SET done_at = now(), run_id = :run WHERE id = :id"),
        {"run": ctx.run_id, "id": row.id},
    )
    return {"request": row.id, "rows": written}


def _pending(ctx: JobContext, conn: Connection) -> dict[str, Any] | None:
    conn.execute(
        sa.text(
            "CREATE TEMP TABLE agg_batch ON COMMIT DROP AS WITH taken AS (DELETE FROM agg_pending "
            "WHERE (fact, date_time_key) IN (SELECT fact, date_time_key FROM agg_pending "
            "ORDER BY date_time_key LIMIT :n FOR UPDATE SKIP LOCKED) "
            "RETURNING fact, date_time_key) "
            "SELECT * FROM taken"
        ),
        {"n": BATCH_INTERVALS},
    )
    # D5: an interval whose facts maintenance purged since Transform queued it is dropped,
    # not rebuilt (its aggregates would come back empty); the purge lock as in _request.
    lock_purge(conn, shared=True)
    conn.execute(
        sa.text(
            "DELETE FROM agg_batch WHERE date_time_key < (SELECT coalesce(max(extract(epoch "
            "FROM purged_before)), 0) FROM purge_mark WHERE what = 'facts')"
        )
    )
    facts = [row[0] for row in conn.execute(sa.text("SELECT DISTINCT fact FROM agg_batch"))]
    if not facts:
        conn.execute(sa.text("DROP TABLE agg_batch"))
        return None
    written = intervals = 0
    for fact in facts:
        keys = open_intervals(
            conn, "SELECT date_time_key FROM agg_batch WHERE fact = :f", {"f": fact}
        )
        if keys is None:
            continue
        intervals += keys.count
        for hierarchy in HIERARCHIES:
            if hierarchy.fact == fact:
                written += rebuild(conn, hierarchy, keys, delta=True)
        close_intervals(conn)
    conn.execute(sa.text("DROP TABLE agg_batch"))
    return {"intervals": intervals, "rows": written}


def run(ctx: JobContext, once: bool = False) -> None:
    with ctx.transaction() as conn:
        ensure_tables(conn)
    passes = requests = 0
    refused: list[str] = []
    while True:
        ctx.stop.check()
        began = time.perf_counter()
        with ctx.transaction() as conn:
            # One writer of aggregate rows at a time (a back-fill's aggregate items take it
            # too); first, before the purge lock the pass takes.
            locks.hold(conn, locks.AGGREGATE_WRITE)
            done = _request(ctx, conn)
            if done is not None:
                requests += 1
                if "refused" in done:
                    refused.append(f"request {done['request']}: {done['refused']}")
            else:
                done = _pending(ctx, conn)
        if done is None:
            if once:
                break
            ctx.stop.wait(IDLE_SECONDS)
            continue
        passes += 1
        ctx.counts.read += int(done.get("intervals", 0))
        ctx.counts.written += int(done["rows"])
        ctx.counts.summary = {
            "batches": passes,
            "requests": requests,
            "last_batch_seconds": round(time.perf_counter() - began, 3),
        }
        if refused:
            ctx.counts.summary["refused_requests"] = refused
        ctx.progress("aggregate", passes, None)


def run_once(ctx: JobContext) -> None:
    run(ctx, once=True)
