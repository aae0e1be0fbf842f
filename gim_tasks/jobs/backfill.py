"""Job_BackfillGIM: one item of a back-fill (SPEC B1): one step of one local day, named by its
run's parameters (``gim_tasks.runtime.backfills`` records them).

- **aggregate**: every hierarchy's SUBHOUR to YEAR rows of the day rebuilt from the facts, in
  one transaction, all or nothing (M4): the aggregate write lock (``locks.AGGREGATE_WRITE``)
  orders it with the aggregation job's passes (their MONTH-and-above updates assume one writer
  at a time), the purge lock (shared, D5) keeps maintenance from dropping the day's facts
  before the commit, and D5 is judged again under it. A stop is honoured before the commit.
- **export**: the day's exported chunks (those starting on the day, up to the export's mark;
  a chunk held by a quality check is the export job's to publish) written again as a new
  generation, each chunk atomically (``export.export_chunk`` with ``generation``): its
  manifest says ``generation`` and ``replaces`` (the generation, run and manifest digest it
  corrects), so a loader tells a correction from new data; the old chunk stays in place until
  the new one is complete. ``reprocess=missing``: only chunks whose folder is gone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gim_tasks.db import locks
from gim_tasks.errors import GimError
from gim_tasks.jobs.base import JobContext
from gim_tasks.schedule.backfill import chunks_of_day
from gim_tasks.schedule.localtime import wall, zone

log = logging.getLogger("gim_tasks.jobs.backfill")


def _params(ctx: JobContext) -> dict[str, Any]:
    with ctx.mart.connect() as conn:
        params = conn.execute(
            sa.text("SELECT params FROM job_run WHERE id = :id"), {"id": ctx.run_id}
        ).scalar_one()
    if params.get("step") not in ("aggregate", "export") or not params.get("day"):
        raise GimError(f"run {ctx.run_id} is not a back-fill item (params {params})")
    return dict(params)


def _stop_point(ctx: JobContext, conn: sa.Connection) -> None:
    """B1: a cancelled back-fill's running item stops at its next commit. The stop request
    is read from the run's row in the transaction about to commit (the heartbeat thread picks
    it up only every few seconds: a short item would commit first)."""
    asked = conn.execute(
        sa.text("SELECT stop_requested_at IS NOT NULL FROM job_run WHERE id = :id"),
        {"id": ctx.run_id},
    ).scalar_one_or_none()
    if asked:
        ctx.stop.request("stop requested")
    ctx.stop.check()


def run(ctx: JobContext) -> None:
    params = _params(ctx)
    day = date.fromisoformat(params["day"])
    if params["step"] == "aggregate":
        aggregate_day(ctx, day)
    else:
        item = f"backfill:{params.get('backfill')}:export:{day.isoformat()}"
        export_day(ctx, day, str(params.get("reprocess", "all")), item)
    ctx.counts.summary = {
        **ctx.counts.summary,
        "backfill": params.get("backfill"),
        "step": params["step"],
        "day": day.isoformat(),
    }


def aggregate_day(ctx: JobContext, day: date) -> None:
    from gim_tasks.aggregate.compute import (
        close_intervals,
        ensure_tables,
        keys_for_days,
        open_intervals,
        rebuild,
    )
    from gim_tasks.aggregate.params import Reaggregation
    from gim_tasks.aggregate.registry import HIERARCHIES
    from gim_tasks.aggregate.retention import load_holdings
    from gim_tasks.aggregate.safety import refusal

    with ctx.transaction() as conn:
        ensure_tables(conn)
    tz = zone(str(ctx.options.get("schedule", "timezone")))
    written = 0
    with ctx.transaction() as conn:
        locks.hold(conn, locks.AGGREGATE_WRITE)  # before the purge lock, as the aggregation job
        now = ctx.now()
        holdings = load_holdings(conn, ctx.options, now, lock=True)
        request = Reaggregation(tuple(h.name for h in HIERARCHIES), "SUBHOUR", None, day, day)
        why = refusal(request, holdings, tz, wall(now, tz).date(), asked=f"back-fill of {day}")
        if why is not None:
            raise GimError(why)
        keys = open_intervals(conn, *keys_for_days(day, day))
        if keys is not None:
            for done, hierarchy in enumerate(HIERARCHIES, 1):
                ctx.stop.check()
                written += rebuild(conn, hierarchy, keys)
                ctx.progress("aggregate", done, len(HIERARCHIES))
            close_intervals(conn)
        _stop_point(ctx, conn)  # a stop asked meanwhile: roll the day back, nothing half-done
    ctx.counts.read += keys.count if keys is not None else 0
    ctx.counts.written += written
    ctx.counts.summary = {"rows": written, "intervals": keys.count if keys is not None else 0}


def _old_generation(folder: Path) -> dict[str, Any]:
    """What the chunk in place is: its generation (1 when its manifest says none, or when
    the folder is gone: it was published once, being at or before the mark), run and digest."""
    try:
        text = (folder / "manifest.json").read_bytes()
        manifest = json.loads(text)
    except (OSError, ValueError):
        return {"generation": 1, "run_id": None, "manifest_sha256": None, "present": False}
    return {
        "generation": int(manifest.get("generation", 1)),
        "run_id": manifest.get("run_id"),
        "manifest_sha256": hashlib.sha256(text).hexdigest(),
        "present": True,
        "backfill_item": manifest.get("backfill_item"),
    }


def export_day(ctx: JobContext, day: date, reprocess: str, item: str = "") -> None:
    """The day's chunks as a new generation. ``item``: the item's firing id without its
    attempt: a chunk whose manifest names it was written by an earlier attempt of this item
    (a worker lost after the exchange) and is kept, so a chunk gets one generation per item
    however many attempts it took."""
    from gim_tasks.jobs import export

    base = export.output_directory(ctx)
    base.mkdir(parents=True, exist_ok=True)
    with ctx.mart.connect() as conn:
        live = set(
            conn.execute(sa.text("SELECT id FROM job_run WHERE state = 'Running'")).scalars()
        )
    for leftover in base.glob(f"{export.REFILL_PREFIX}*"):  # a crashed item's unfinished chunk
        owner = leftover.name[len(export.REFILL_PREFIX) :].split("-", 1)[0]
        if not owner.isdigit() or int(owner) not in live:
            shutil.rmtree(leftover, ignore_errors=True)
    size = int(ctx.options.get("gim-export", "chunk-size-seconds"))
    tables = (
        export.VIEW_EXPORTS
        if ctx.options.get("gim-export", "use-export-views")
        else export.FACT_EXPORTS
    )
    with ctx.mart.connect() as conn:
        mark = export._mark(conn)
        held = {
            row[0]
            for row in conn.execute(
                sa.text("SELECT chunk_start FROM export_hold WHERE released_at IS NULL")
            )
        }
    chunks = chunks_of_day(day, str(ctx.options.get("schedule", "timezone")), size, mark)
    written, kept, skipped_held = [], [], []
    for number, (start, end) in enumerate(chunks, 1):
        with ctx.mart.connect() as conn:
            _stop_point(ctx, conn)  # before each chunk: a chunk is written whole or not at all
        if start in held:
            skipped_held.append(export.chunk_name(start, end))
            continue
        folder = base / export.chunk_name(start, end)
        if reprocess == "missing" and export.manifest_ok(folder, start, end):
            kept.append(folder.name)
            continue
        old = _old_generation(folder)
        if item and old["backfill_item"] == item and export.manifest_ok(folder, start, end):
            kept.append(folder.name)  # this item's earlier attempt wrote it
            continue
        generation = {
            "generation": old["generation"] + 1,
            "replaces": {k: old[k] for k in ("generation", "run_id", "manifest_sha256", "present")},
            "backfill_item": item or None,
        }
        result = export.export_chunk(ctx, base, start, end, tables, generation=generation)
        if "held" in result:
            raise GimError(
                f"chunk {result['chunk']} fails its manifest-rows check: {result['held']}; "
                "the chunk in place is kept"
            )
        written.append(result["chunk"])
        ctx.counts.written += int(result.get("rows", 0))
        ctx.progress("export", number, len(chunks))
    ctx.counts.summary = {
        "chunks": written,
        "kept": kept,
        "held_skipped": skipped_held,
        "directory": str(base),
    }
    log.info("back-fill export of %s: %d chunk(s) written", day, len(written))
