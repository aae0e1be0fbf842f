"""Job_ExtractICON: incremental, batched copy of new and changed IDB rows into staging.

Correctness (SPEC D1). Every IDB row carries ``change_xid``, the id of the transaction that
last wrote it. One extraction reads each IDB inside one REPEATABLE READ transaction, whose
snapshot ``S`` (``pg_current_snapshot()``) it records. A row version belongs to this extraction
iff its ``change_xid`` is visible in ``S`` (we can read it, so it committed before ``S``) and
was not visible in the snapshot ``D`` of the previous complete extraction. Transactions that
commit out of id order are therefore never missed: visibility is about commit, not about ids.
``change_xid >= pg_snapshot_xmin(D)`` is implied by "not visible in D" and lets an index skip
all older rows, so the cost follows new rows, not history.

Batches: rows are copied in id order, ``extract-batch-size`` at a time, from the IDB with
``COPY (SELECT …) TO STDOUT`` into the Info Mart with ``COPY … FROM STDIN`` (binary): straight
into staging when every row of the batch is new to it, else into a temporary table that is then
merged into staging. Each batch commits in one Info Mart transaction together with its mark
(``pending_snapshot = S``, ``pending_last_id``), so a crash loses at most the uncommitted batch,
and a rerun skips rows visible in the pending snapshot with ids up to the mark. Staging is keyed
by (IDB, id) and a merge only rewrites a row whose ``change_xid`` changed, so a row version is
never stored twice, whatever happened.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from gim_tasks.db import locks
from gim_tasks.db.mart_tables import STAGING, extract_mark, idb_source
from gim_tasks.db.sessions import libpq_url
from gim_tasks.idb import schema as idb
from gim_tasks.jobs.base import Aborted, JobContext, in_parallel
from gim_tasks.jobs.transform import TRAFFIC_SOURCES
from gim_tasks.settings import redact

log = logging.getLogger("gim_tasks.jobs.extract")


def idb_name(url: str) -> str:
    """A stable name of an IDB: host:port/database, without credentials."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}{parts.path}"


def register_idb(conn: Connection, url: str) -> int:
    """The ``idb_id`` of an IDB URL, registering it on first sight."""
    name = idb_name(url)
    conn.execute(insert(idb_source).values(name=name).on_conflict_do_nothing())
    return int(
        conn.execute(sa.select(idb_source.c.idb_id).where(idb_source.c.name == name)).scalar_one()
    )


def _source_columns(table: sa.Table) -> list[str]:
    return [c.name for c in table.columns]


def _select_changes(table: sa.Table) -> sql.Composed:
    """Rows of ``table`` to extract, in id order, as the staging columns expect them."""
    columns = [
        sql.SQL("change_xid::text::bigint") if name == "change_xid" else sql.Identifier(name)
        for name in _source_columns(table)
    ]
    return sql.SQL(
        "SELECT {idb}, {columns} FROM {table} "
        "WHERE (%(done)s::pg_snapshot IS NULL OR (change_xid >= pg_snapshot_xmin(%(done)s) "
        "       AND NOT pg_visible_in_snapshot(change_xid, %(done)s)))"
        "  AND (%(pending)s::pg_snapshot IS NULL "
        "       OR NOT pg_visible_in_snapshot(change_xid, %(pending)s) OR id > %(pending_last)s)"
        "  AND id > %(after)s "
        "ORDER BY id LIMIT %(limit)s"
    ).format(
        idb=sql.SQL("{}::smallint").format(sql.Placeholder("idb_id")),
        columns=sql.SQL(", ").join(columns),
        table=sql.Identifier(table.name),
    )


@dataclass
class Mark:
    done: str | None
    pending: str | None
    pending_last: int | None


def _mark(conn: Connection, idb_id: int, table: str) -> Mark:
    row = conn.execute(
        sa.select(extract_mark).where(
            extract_mark.c.idb_id == idb_id, extract_mark.c.table_name == table
        )
    ).one_or_none()
    if row is None:
        return Mark(None, None, None)
    return Mark(row.done_snapshot, row.pending_snapshot, row.pending_last_id)


def _save_mark(conn: Connection, idb_id: int, table: str, rows: int, **values: object) -> None:
    statement = insert(extract_mark).values(
        idb_id=idb_id, table_name=table, rows_extracted=rows, **values
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["idb_id", "table_name"],
            set_={
                **values,
                "rows_extracted": extract_mark.c.rows_extracted + rows,
                "updated_at": sa.func.now(),
            },
        )
    )


def _highest(conn: Connection, staging: sa.Table, idb_id: int) -> int:
    """The highest id staging holds for this IDB (an index lookup); 0 when none."""
    return int(
        conn.execute(
            sa.text(f"SELECT coalesce(max(id), 0) FROM {staging.name} WHERE idb_id = :idb"),
            {"idb": idb_id},
        ).scalar_one()
    )


def _copy(
    source: psycopg.Connection,
    target: psycopg.Connection,
    query: sql.Composed,
    params: dict[str, object],
    table: str,
    columns: str,
) -> int:
    """Stream one batch from the IDB into ``table`` of the Info Mart (binary COPY out and in,
    block by block: memory stays flat); returns the rows copied."""
    with source.cursor() as src_cur, target.cursor() as dst_cur:
        select = sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)
        with (
            src_cur.copy(select, params) as reader,
            dst_cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as writer,
        ):
            for block in reader:
                writer.write(block)
        return max(dst_cur.rowcount, 0)


def _merge_batch(conn: Connection, staging: sa.Table, idb_id: int) -> int:
    """Merge the temporary batch into staging; only new or changed row versions are written.

    Rows with an id above the highest id staging holds for this IDB cannot be there yet, so
    they are plainly inserted (an upsert costs about 40 % more per row); the rest go through
    the upsert. This holds because the caller holds the table's writer lock (no other writer
    can add ids meanwhile) and staging only ever loses rows below its highest id (retention
    purges old rows; a purged row that changes again is new to staging anyway). Were it
    wrong, the primary key would refuse the insert and the batch would roll back: nothing is
    ever stored twice."""
    columns = [c.name for c in staging.columns if c.name not in ("load_seq", "extracted_at")]
    names = ", ".join(f'"{name}"' for name in columns)
    updates = ", ".join(
        f'"{name}" = excluded."{name}"' for name in columns if name not in ("idb_id", "id")
    )
    highest = _highest(conn, staging, idb_id)
    merged = conn.execute(
        sa.text(
            f"INSERT INTO {staging.name} ({names}) SELECT {names} FROM extract_batch "
            f"WHERE id <= :highest ON CONFLICT (idb_id, id) DO UPDATE SET {updates}, "
            "load_seq = nextval('staging_load_seq'), "
            f"extracted_at = now() WHERE {staging.name}.change_xid <> excluded.change_xid"
        ),
        {"highest": highest},
    ).rowcount
    added = conn.execute(
        sa.text(
            f"INSERT INTO {staging.name} ({names}) SELECT {names} FROM extract_batch "
            "WHERE id > :highest"
        ),
        {"highest": highest},
    ).rowcount
    return int(merged or 0) + int(added or 0)


def extract_table(
    ctx: JobContext,
    source: psycopg.Connection,
    snapshot: str,
    idb_id: int,
    table: sa.Table,
    counting: threading.Lock | None = None,
    abort: threading.Event | None = None,
) -> int:
    """Copy one table's changes in batches; returns the rows copied. ``counting`` guards the
    run's counters when tables are extracted in threads; ``abort`` is set when another table
    of the run failed."""
    counting = counting or threading.Lock()
    staging = STAGING[table.name]
    batch_size = int(ctx.options.get("gim-etl", "extract-batch-size"))
    with ctx.mart.connect() as conn:
        mark = _mark(conn, idb_id, table.name)
    after = 0  # id cursor within this snapshot
    copied = 0
    query = _select_changes(table)
    while True:
        ctx.stop.check()
        if abort is not None and abort.is_set():
            raise Aborted("another table failed")
        params = {
            "idb_id": idb_id,
            "done": mark.done,
            "pending": mark.pending,
            "pending_last": mark.pending_last or 0,
            "after": after,
            "limit": batch_size,
        }
        with ctx.transaction(batch=True) as conn:
            raw = conn.connection.dbapi_connection
            assert isinstance(raw, psycopg.Connection)
            column_list = ", ".join(["idb_id", *_source_columns(table)])
            # The writers of this staging table are serialised by a transaction-scoped
            # advisory lock held to the commit: its load_seq order is then its commit order,
            # which Transform's mark relies on (transform.py). Different tables are extracted
            # in parallel.
            #
            # Straight path (issue 40): when every id this batch can hold lies above the
            # highest id staging has for this IDB (a first load, and every batch past the
            # changed rows of a later one), the rows are new to staging, so, if the lock is
            # free, they are copied from the IDB straight into it under the lock: written
            # once. That highest id needs no lock to stay true: only this run writes this
            # IDB's rows (Extract is single instance, S2, with one part per IDB, H2), and
            # retention only lowers it. Otherwise the rows go through a temporary table,
            # copied without the lock (so several IDBs' parts read their sources at once and
            # only merge one at a time), then merged under it.
            straight = after >= _highest(conn, staging, idb_id) and locks.try_hold(
                conn, locks.STAGING_WRITE, table=staging.name
            )
            if straight:
                rows = _copy(source, raw, query, params, staging.name, column_list)
                last = _highest(conn, staging, idb_id)
            else:
                # Only the copied columns: no load_seq default to draw from the sequence here.
                conn.execute(
                    sa.text(
                        f"CREATE TEMP TABLE extract_batch ON COMMIT DROP AS SELECT "
                        f"{column_list} FROM {staging.name} WITH NO DATA"
                    )
                )
                _copy(source, raw, query, params, "extract_batch", column_list)
                locks.hold(conn, locks.STAGING_WRITE, table=staging.name)
                rows, last = conn.execute(
                    sa.text("SELECT count(*), coalesce(max(id), 0) FROM extract_batch")
                ).one()
            if rows == 0:
                # Table done for this snapshot: it becomes the new baseline.
                _save_mark(
                    conn,
                    idb_id,
                    table.name,
                    0,
                    done_snapshot=snapshot,
                    pending_snapshot=None,
                    pending_last_id=None,
                )
                break  # committed, fenced
            written = rows if straight else _merge_batch(conn, staging, idb_id)
            _save_mark(
                conn,
                idb_id,
                table.name,
                rows,
                done_snapshot=mark.done,
                pending_snapshot=snapshot,
                pending_last_id=last,
            )
        after = last
        copied += rows
        with counting:
            ctx.counts.read += rows
            ctx.counts.written += written
            ctx.progress(f"extract {table.name}", copied, None)
    return copied


def _extract_as_of(
    ctx: JobContext,
    url: str,
    exported: str,
    snapshot: str,
    idb_id: int,
    counting: threading.Lock,
    table: sa.Table,
    failed: threading.Event,
) -> int:
    """Extract one table in a connection of its own that reads as of the exported snapshot."""
    with psycopg.connect(libpq_url(url), autocommit=False) as reader:
        reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        reader.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(exported)))
        copied = extract_table(ctx, reader, snapshot, idb_id, table, counting, failed)
        reader.rollback()
        return copied


def extract_idb(ctx: JobContext, url: str) -> int:
    """Every table of one IDB; returns the rows copied.

    One REPEATABLE READ transaction fixes the snapshot ``S``; with ``parallel-tables`` > 1 the
    tables are read by several connections that import that very snapshot
    (``pg_export_snapshot`` / ``SET TRANSACTION SNAPSHOT``), so every table is extracted as of
    ``S`` whichever connection reads it."""
    parallel = int(ctx.options.get("gim-etl", "parallel-tables"))
    counting = threading.Lock()
    with ctx.transaction() as conn:
        idb_id = register_idb(conn, url)
    with psycopg.connect(libpq_url(url), autocommit=False) as source:
        source.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = str(source.execute("SELECT pg_current_snapshot()::text").fetchone()[0])  # type: ignore[index]
        # Configuration (dimension) tables first, each committed, then the traffic: a
        # Transform started while Extract runs (M2) then finds the queue, agent, ... of every
        # traffic row it can see. (Before, it discarded such rows as "unknown queue" for
        # good, and the facts differed from a clean load: D1.) They are small.
        configuration = [t for t in idb.TABLES if t.name not in TRAFFIC_SOURCES]
        traffic = sorted(
            (t for t in idb.TABLES if t.name in TRAFFIC_SOURCES),
            key=lambda t: TRAFFIC_SOURCES.index(t.name),  # interactions, then segments, ...
        )
        total = sum(
            extract_table(ctx, source, snapshot, idb_id, table, counting) for table in configuration
        )
        if parallel == 1:
            total += sum(
                extract_table(ctx, source, snapshot, idb_id, table, counting) for table in traffic
            )
        else:
            exported = str(source.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
            total += sum(
                in_parallel(
                    parallel,
                    traffic,
                    partial(_extract_as_of, ctx, url, exported, snapshot, idb_id, counting),
                    "extract",
                )
            )
        source.rollback()
    log.info("extracted %d rows from %s (%s)", total, redact(url), ctx.rate(ctx.counts.read))
    return total


def run(ctx: JobContext) -> None:
    """Job_ExtractICON: every IDB in ``GIM_IDB_URLS``. With several IDBs and
    ``extract-fan-out``, a recorded run spreads them over the workers as parts (SPEC H2,
    runtime/parts.py); else one IDB after the other here."""
    if not ctx.idb_urls:
        ctx.counts.warnings += 1
        ctx.counts.summary["warning"] = "no IDB configured (GIM_IDB_URLS is empty)"
        return
    if (
        ctx.fan_out is not None
        and len(ctx.idb_urls) > 1
        and ctx.options.get("gim-etl", "extract-fan-out")
    ):
        # IDBs new to the mart are registered here, in GIM_IDB_URLS order, before the parts
        # race: their idb_id (in facts, discards, `gim etl status`) is the same as one after
        # the other would give, whichever part starts first.
        with ctx.transaction() as conn:
            for url in ctx.idb_urls:
                register_idb(conn, url)
        ctx.fan_out(ctx, extract_idb)
        return
    ctx.counts.summary["rows_per_idb"] = {
        idb_name(url): extract_idb(ctx, url) for url in ctx.idb_urls
    }
