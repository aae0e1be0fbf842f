"""Job_ExportGIM: incremental, atomic, resumable CSV export (SPEC §2 [gim-export], S8, D4).

The data time from the exported-through point (or ``start-date``, or the oldest fact) up to
the newest complete chunk is cut into chunks of ``chunk-size-seconds``. A chunk is a folder
``chunk-<start>-<end>`` with one CSV per table and ``manifest.json`` (tables, row counts,
SHA-256, interval, encoding). It is written under a hidden temporary name, every file and the
folder fsynced, then renamed into place (atomic), and only then is the exported-through point
committed. A crash before the rename leaves only a hidden partial folder, removed by the next
run, which redoes exactly that chunk; a crash after the rename but before the commit leaves a
complete chunk whose manifest the next run verifies and accepts instead of writing it again.
So every data interval is exported exactly once (D4).

Rows stream from PostgreSQL with ``COPY (SELECT …) TO STDOUT`` into the file: memory stays flat.
A chunk is "complete" when its end is at least ``COMPLETE_AFTER`` in the past (late call
endings have arrived by then) [decision].

Quality gates (Q3, ``monitor/checks.py``): before a chunk is written its checks are judged
(discard ratio, rows of each hour); after its files are written and before the rename, its
manifest's rows are compared with the facts. A failing ``error`` check holds the chunk: it is
not published, an ``export_hold`` row says why, and the mark moves past it in the same
transaction (the chunks after it leave on time). Each run first tries the held chunks again
and publishes each once its checks pass or an admin overrode them; its manifest then says
``held`` (when and why), so a loader knows it arrived late. At the end of a run the day checks
that are due are judged (the last closed day's discard ratio and one-day aggregate verify).
"""

from __future__ import annotations

import codecs
import ctypes
import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql

from gim_tasks.db import mart_tables as mart
from gim_tasks.db.sessions import libpq_url
from gim_tasks.jobs.base import JobContext
from gim_tasks.monitor import checks
from gim_tasks.options.paths import resolve_output_directory

log = logging.getLogger("gim_tasks.jobs.export")

COMPLETE_AFTER = timedelta(minutes=15)
PARTIAL_PREFIX = ".partial-"
#: A back-fill's re-export writes under ``.refill-<run>-``: the export job's clean-up of its
#: own crashed chunks (``.partial-*``) never touches a re-export running beside it.
REFILL_PREFIX = ".refill-"
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> None:
    """Swap two directory entries in one atomic step (Linux ``renameat2`` with
    ``RENAME_EXCHANGE``): a reader sees the old chunk or the new one, never neither."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE):
        errno = ctypes.get_errno()
        raise OSError(errno, f"renameat2 exchange: {os.strerror(errno)}", str(a), None, str(b))


@dataclass(frozen=True)
class ExportTable:
    name: str  # file name without .csv
    query: str  # SELECT with :start/:end placeholders as %(start)s / %(end)s


def _fact_query(table: sa.Table) -> str:
    columns = ", ".join(c.name for c in table.columns if c.name != "run_id")
    return (
        f"SELECT {columns} FROM {table.name} WHERE start_ts >= %(start)s AND start_ts < "
        f"%(end)s ORDER BY start_ts, idb_id"
    )


#: Raw fact tables.
FACT_EXPORTS = tuple(ExportTable(t.name, _fact_query(t)) for t in mart.FACTS)

#: Export views (``use-export-views``): stable column names, readable values instead of keys.
VIEW_EXPORTS = (
    ExportTable(
        "interaction_segments",
        """
        SELECT f.idb_id, f.segment_id, f.interaction_id, f.seq, f.start_ts AS queued_at,
               f.end_ts AS ended_at, q.name AS queue, q.queue_group, q.media_type,
               a.login AS agent_login, a.agent_group, f.outcome, f.wait_seconds,
               f.ring_seconds, f.talk_seconds, f.hold_seconds, f.wrap_seconds,
               f.answered_in_service_level, d.local_date, d.local_time
        FROM interaction_segment_fact f
        LEFT JOIN dim_queue q ON q.queue_key = f.queue_key
        LEFT JOIN dim_agent a ON a.agent_key = f.agent_key
        LEFT JOIN date_time d ON d.date_time_key = f.date_time_key
        WHERE f.start_ts >= %(start)s AND f.start_ts < %(end)s ORDER BY f.start_ts, f.idb_id""",
    ),
    ExportTable(
        "interactions",
        """
        SELECT f.idb_id, f.interaction_id, f.start_ts AS started_at, f.end_ts AS ended_at,
               m.name AS media_type, f.direction, cs.value AS customer_segment,
               st.value AS service_type, f.status, f.duration_seconds
        FROM interaction_fact f
        LEFT JOIN dim_media_type m ON m.media_type_key = f.media_type_key
        LEFT JOIN dim_business_attribute cs ON cs.business_attribute_key = f.customer_segment_key
        LEFT JOIN dim_business_attribute st ON st.business_attribute_key = f.service_type_key
        WHERE f.start_ts >= %(start)s AND f.start_ts < %(end)s ORDER BY f.start_ts, f.idb_id""",
    ),
    ExportTable(
        "agent_states",
        """
        SELECT f.idb_id, f.state_id, a.login AS agent_login, f.state, r.name AS reason,
               f.start_ts AS started_at, f.end_ts AS ended_at, f.duration_seconds
        FROM agent_state_fact f
        LEFT JOIN dim_agent a ON a.agent_key = f.agent_key
        LEFT JOIN agent_state_reason_fact rf ON rf.idb_id = f.idb_id AND rf.state_id = f.state_id
             AND rf.start_ts = f.start_ts
        LEFT JOIN dim_state_reason r ON r.state_reason_key = rf.state_reason_key
        WHERE f.start_ts >= %(start)s AND f.start_ts < %(end)s ORDER BY f.start_ts, f.idb_id""",
    ),
)


#: The fact table behind each export view (Q3's manifest-rows: one view row per fact row).
VIEW_FACTS = {
    "interaction_segments": "interaction_segment_fact",
    "interactions": "interaction_fact",
    "agent_states": "agent_state_fact",
}
FACT_NAMES = frozenset(t.name for t in mart.FACTS)


def fact_behind(table: ExportTable) -> str | None:
    return VIEW_FACTS.get(table.name) or (table.name if table.name in FACT_NAMES else None)


def chunk_name(start: datetime, end: datetime) -> str:
    """A file-system-safe name made of the interval only (never of data values)."""
    return f"chunk-{start:%Y%m%dT%H%M%SZ}-{end:%Y%m%dT%H%M%SZ}"


def output_directory(ctx: JobContext) -> Path:
    return resolve_output_directory(ctx.options, ctx.output_base)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _url(ctx: JobContext) -> str:
    return libpq_url(ctx.mart.url.render_as_string(hide_password=False))


def write_table(
    url: str, table: ExportTable, start: datetime, end: datetime, folder: Path, encoding: str
) -> dict[str, Any]:
    """Stream one table's rows of the interval into ``folder/<name>.csv``."""
    path = folder / f"{table.name}.csv"
    digest = hashlib.sha256()
    # COPY sends UTF-8 (the connection's encoding); re-encode only when another is asked for.
    same = codecs.lookup(encoding).name == "utf-8"
    encoder = codecs.getincrementalencoder(encoding)()
    decoder = codecs.getincrementaldecoder("utf-8")()
    with (
        psycopg.connect(url, application_name="gim-export") as conn,
        conn.cursor() as cursor,
        path.open("wb") as sink,
    ):
        statement = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(
            sql.SQL(table.query)
        )
        with cursor.copy(statement, {"start": start, "end": end}) as copy:
            for block in copy:
                data = block if same else encoder.encode(decoder.decode(bytes(block)))
                digest.update(data)
                sink.write(data)
        tail = b"" if same else encoder.encode(decoder.decode(b"", final=True), final=True)
        digest.update(tail)
        sink.write(tail)
        sink.flush()
        os.fsync(sink.fileno())
        rows = cursor.rowcount
    return {
        "file": path.name,
        "rows": rows,
        "sha256": digest.hexdigest(),
        "bytes": path.stat().st_size,
    }


def manifest_ok(folder: Path, start: datetime, end: datetime) -> bool:
    """Is ``folder`` a complete chunk of exactly this interval whose files match?"""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("start") != start.isoformat() or manifest.get("end") != end.isoformat():
        return False
    for entry in manifest.get("tables", {}).values():
        path = folder / entry["file"]
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            return False
    return True


def export_chunk(
    ctx: JobContext,
    base: Path,
    start: datetime,
    end: datetime,
    tables: tuple[ExportTable, ...],
    held: dict[str, Any] | None = None,
    generation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write one chunk and rename it into place; ``{"held": reasons}`` instead when its
    manifest-rows check fails with ``error`` (nothing published). ``held``: the hold it is
    released from, told in its manifest. ``generation`` (a back-fill's re-export, B1): the
    ``generation`` and ``replaces`` of its manifest; the chunk in place, if any, stays until the
    new one is complete, then the two are exchanged in one atomic step (:func:`exchange`)."""
    final = base / chunk_name(start, end)
    if final.exists() and generation is None:
        if manifest_ok(final, start, end):  # renamed before a crash; the mark was not moved
            return {"chunk": final.name, "reused": True}
        shutil.rmtree(final)  # not ours or damaged: redo it
    encoding = str(ctx.options.get("gim-export", "output-files-encoding"))
    prefix = PARTIAL_PREFIX if generation is None else f"{REFILL_PREFIX}{ctx.run_id}-"
    partial = base / f"{prefix}{final.name}-{os.getpid()}"
    partial.mkdir(parents=True)
    workers = int(ctx.options.get("gim-export", "thread-pool-size"))
    url = _url(ctx)
    with ThreadPoolExecutor(max_workers=min(workers, len(tables))) as pool:
        results = list(
            pool.map(lambda t: write_table(url, t, start, end, partial, encoding), tables)
        )
    reasons = _manifest_gate(ctx, final.name, start, end, tables, results)
    if reasons:
        shutil.rmtree(partial)
        return {"chunk": final.name, "held": reasons}
    manifest = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "encoding": encoding,
        "run_id": ctx.run_id,
        "created_at": ctx.now().isoformat(),
        "tables": {t.name: r for t, r in zip(tables, results, strict=True)},
    }
    if held is not None:
        manifest["held"] = held
    if generation is not None:
        manifest |= generation
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2))
    _fsync(partial / "manifest.json")
    _fsync(partial)
    if generation is not None and final.exists():
        exchange(partial, final)  # atomic: the new generation in place, the old one aside
        _fsync(base)
        shutil.rmtree(partial)  # the old generation (a crash here: removed by the next item)
    else:
        os.rename(partial, final)  # atomic: the chunk appears whole or not at all
    _fsync(base)
    return {"chunk": final.name, "rows": sum(r["rows"] for r in results)}


def _manifest_gate(
    ctx: JobContext,
    name: str,
    start: datetime,
    end: datetime,
    tables: tuple[ExportTable, ...],
    results: list[dict[str, Any]],
) -> list[str]:
    """Q3's manifest-rows: the rows written per file against the facts of the interval,
    counted now (a Transform that loaded late rows meanwhile makes them differ: the chunk is
    held and written again at the next run). Returns why it may not be published."""
    severity = ctx.options.get("quality", "manifest-rows")
    if severity == checks.OFF:
        return []
    written = {t.name: int(r["rows"]) for t, r in zip(tables, results, strict=True)}
    with ctx.transaction() as conn:
        facts = {
            t.name: checks.rows_between(conn, fact, start, end)
            for t in tables
            if (fact := fact_behind(t)) is not None
        }
        tz_name = ctx.options.schedule().timezone
        found = checks.judge_manifest(
            written,
            facts,
            chunk=name,
            day=checks.local_day(start, tz_name),
            start=start,
            end=end,
            severity=severity,
        )
        scope = [(checks.Check.MANIFEST_ROWS.value, start, end)]
        checks.store(conn, [found] if found else [], scope, ctx.now())
        return checks.holding(conn, start, end, [checks.Check.MANIFEST_ROWS.value])


def _gate(ctx: JobContext, start: datetime, end: datetime) -> list[str]:
    """Judge a chunk's checks and say why it may not be published (empty: it may). The
    manifest-rows verdict is judged again when the chunk is written, so it holds only there."""
    with ctx.transaction() as conn:
        results, scopes = checks.chunk_checks(conn, ctx.options, start, end)
        checks.store(conn, results, scopes, ctx.now())
        others = [name for name in checks.CHECKS if name != checks.Check.MANIFEST_ROWS]
        return checks.holding(conn, start, end, others)


def _publish(
    ctx: JobContext,
    base: Path,
    start: datetime,
    end: datetime,
    tables: tuple[ExportTable, ...],
    held: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A chunk through its gate: ``{"held": reasons}`` when a check holds it (before it is
    written, or at its manifest), else what :func:`export_chunk` wrote. New chunks and held
    ones take this one road."""
    reasons = _gate(ctx, start, end)
    if reasons:
        return {"chunk": chunk_name(start, end), "held": reasons}
    return _export_with_retries(ctx, base, start, end, tables, held)


def _hold(
    ctx: JobContext, start: datetime, end: datetime, reasons: list[str], move_mark: bool
) -> None:
    """Record the hold and, for a new chunk, move the mark past it, in one transaction: a
    chunk is never passed over without its hold row."""
    reason = "; ".join(reasons)
    with ctx.transaction() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO export_hold (chunk_start, chunk_end, reason, held_at, held_by_run) "
                "VALUES (:s, :e, :r, :now, :run) ON CONFLICT (chunk_start) DO UPDATE "
                "SET reason = excluded.reason"
            ),
            {"s": start, "e": end, "r": reason, "now": ctx.now(), "run": ctx.run_id},
        )
        if move_mark:
            _move_mark(conn, end, chunk_name(start, end))
    ctx.counts.warnings += 1
    log.warning("chunk %s held: %s", chunk_name(start, end), reason)


def _move_mark(conn: sa.Connection, end: datetime, chunk: str) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO export_mark (id, exported_through, last_chunk) VALUES (1, :t, :c) "
            "ON CONFLICT (id) DO UPDATE SET exported_through = :t, last_chunk = :c, "
            "updated_at = now()"
        ),
        {"t": end, "c": chunk},
    )


def release_held(ctx: JobContext, base: Path, tables: tuple[ExportTable, ...]) -> list[str]:
    """Try the held chunks, oldest first: publish each whose checks pass now or were
    overridden (exactly once: a crash after the rename finds the folder and reuses it)."""
    with ctx.mart.connect() as conn:
        held = conn.execute(
            sa.text(
                "SELECT chunk_start, chunk_end, reason, held_at FROM export_hold "
                "WHERE released_at IS NULL ORDER BY chunk_start"
            )
        ).all()
    released = []
    for row in held:
        ctx.stop.check()
        start, end = row.chunk_start, row.chunk_end
        told = {"held_at": row.held_at.isoformat(), "reason": row.reason}
        result = _publish(ctx, base, start, end, tables, told)
        if "held" in result:
            _hold(ctx, start, end, result["held"], move_mark=False)
            continue
        with ctx.transaction() as conn:
            why = "override" if checks.overridden(conn, start, end) else "passed"
            conn.execute(
                sa.text(
                    "UPDATE export_hold SET released_at = :now, released_by_run = :run, "
                    "release = :why WHERE chunk_start = :s AND released_at IS NULL"
                ),
                {"now": ctx.now(), "run": ctx.run_id, "why": why, "s": start},
            )
        ctx.counts.written += int(result.get("rows", 0))
        released.append(result["chunk"])
    return released


def _mark(conn: sa.Connection) -> datetime | None:
    return mart.exported_through(conn)


def _start_point(ctx: JobContext, chunk: timedelta) -> datetime | None:
    with ctx.mart.connect() as conn:
        through = _mark(conn)
        if through is not None:
            return through
        start_date = ctx.options.get("gim-export", "start-date")
        if start_date is not None:
            return datetime.combine(start_date, datetime.min.time(), tzinfo=UTC)
        oldest = conn.execute(
            sa.text("SELECT min(start_ts) FROM interaction_segment_fact")
        ).scalar_one_or_none()
    if oldest is None:
        return None
    epoch = int(oldest.timestamp())
    step = int(chunk.total_seconds())
    return datetime.fromtimestamp(epoch - epoch % step, tz=UTC)


def purge_old_files(ctx: JobContext, base: Path) -> int:
    keep = timedelta(days=int(ctx.options.get("gim-export", "days-to-keep-output-files")))
    removed = 0
    for folder in base.glob("chunk-*"):
        try:
            end = datetime.strptime(folder.name.rsplit("-", 1)[1], "%Y%m%dT%H%M%SZ").replace(
                tzinfo=UTC
            )
        except ValueError:
            continue  # not ours
        if end < ctx.now() - keep:
            shutil.rmtree(folder)
            removed += 1
    return removed


def _export_with_retries(
    ctx: JobContext,
    base: Path,
    start: datetime,
    end: datetime,
    tables: tuple[ExportTable, ...],
    held: dict[str, Any] | None = None,
) -> dict[str, Any]:
    retries = int(ctx.options.get("gim-export", "max-retries"))
    delay = float(ctx.options.get("gim-export", "retry-delay-seconds"))
    for attempt in range(retries + 1):
        try:
            return export_chunk(ctx, base, start, end, tables, held)
        except psycopg.OperationalError as error:  # transient: lost connection, shutdown
            if attempt == retries:
                raise
            ctx.counts.warnings += 1
            log.warning(
                "chunk %s failed (%s); retry %d of %d in %s s",
                chunk_name(start, end),
                error,
                attempt + 1,
                retries,
                delay,
            )
            for leftover in base.glob(f"{PARTIAL_PREFIX}*"):
                shutil.rmtree(leftover, ignore_errors=True)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def run(ctx: JobContext) -> None:
    base = output_directory(ctx)
    base.mkdir(parents=True, exist_ok=True)
    for leftover in base.glob(f"{PARTIAL_PREFIX}*"):  # a crashed run's unfinished chunk
        shutil.rmtree(leftover, ignore_errors=True)
    chunk = timedelta(seconds=int(ctx.options.get("gim-export", "chunk-size-seconds")))
    tables = VIEW_EXPORTS if ctx.options.get("gim-export", "use-export-views") else FACT_EXPORTS
    released = release_held(ctx, base, tables)
    start = _start_point(ctx, chunk)
    limit = ctx.now() - COMPLETE_AFTER
    chunks: list[str] = []
    held: list[str] = []
    while start is not None and start + chunk <= limit:
        ctx.stop.check()
        end = start + chunk
        result = _publish(ctx, base, start, end, tables)
        if "held" in result:
            _hold(ctx, start, end, result["held"], move_mark=True)
            held.append(result["chunk"])
        else:
            with ctx.transaction() as conn:
                _move_mark(conn, end, result["chunk"])
            ctx.counts.written += int(result.get("rows", 0))
            chunks.append(result["chunk"])
        ctx.progress("export", len(chunks) + len(held), None)
        start = end
    with ctx.transaction() as conn:
        judged = checks.run_due(conn, ctx.options, ctx.now())
    removed = purge_old_files(ctx, base)
    ctx.counts.summary = {
        "chunks": chunks,
        "held": held,
        "released": released,
        "days_checked": judged,
        "files_removed": removed,
        "directory": str(base),
    }
