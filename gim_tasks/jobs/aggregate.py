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
from datetime import date
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
from gim_tasks.aggregate.registry import BY_NAME, HIERARCHIES
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
    params = row.params
    start, end = date.fromisoformat(params["start"]), date.fromisoformat(params["end"])
    today = wall(ctx.now(), zone(str(ctx.options.get("schedule", "timezone")))).date()
    if params.get("flavor") == "Online":
        start = max(start, today)
    elif params.get("flavor") == "Offline":
        end = min(end, date.fromordinal(today.toordinal() - 1))
    written = 0
    keys = open_intervals(conn, *keys_for_days(start, end)) if start <= end else None
    if keys is not None:
        for name in params["hierarchies"]:
            written += rebuild(conn, BY_NAME[name], keys, params["level"])
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
    with ctx.mart.begin() as conn:
        ensure_tables(conn)
    passes = requests = 0
    while True:
        ctx.stop.check()
        began = time.perf_counter()
        with ctx.mart.begin() as conn:
            done = _request(ctx, conn)
            if done is not None:
                requests += 1
            else:
                done = _pending(ctx, conn)
            if done is not None:
                ctx.fence(conn)
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
        ctx.progress("aggregate", passes, None)


def run_once(ctx: JobContext) -> None:
    run(ctx, once=True)
