"""Job_TransformGIM: staging -> dimensions, DATE_TIME and facts, set-based (SPEC D1, D2, R3).

Each fact is declared once (:data:`FACTS`): its staging source, start timestamp, dimension
joins, column expressions and the checks that send a row to ``discard`` with a reason. A batch
is the next set of staging rows of one source past Transform's mark (``load_seq`` order). A
short transaction first creates the day partitions and DATE_TIME rows it needs; then, in one
transaction, it writes discards, upserts facts (ON CONFLICT on the fact's key: a late update of
a call rewrites its fact), removes discards of rows that became valid, and moves the mark.
Running it again changes nothing (idempotent): the upsert key is the source row, and rows
behind the mark are not read again. Extract serialises the writers of each staging table, so
its ``load_seq`` order is its commit order and the mark never passes a row that is not yet
committed.

Assumption, documented: the start timestamp of a source row (the fact's partition key) never
changes after it is written; later updates change end times and measures.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gim_tasks.db import mart_tables as mart
from gim_tasks.db.calendar import insert_keys_sql, key_sql
from gim_tasks.db.partitions import ensure_partitions
from gim_tasks.jobs.base import Aborted, JobContext, in_parallel

log = logging.getLogger("gim_tasks.jobs.transform")

BATCH_ROWS = 50_000


def _seconds(later: str, earlier: str) -> str:
    return f"round(extract(epoch FROM ({later}) - ({earlier})))::int"


@dataclass(frozen=True)
class FactSpec:
    fact: sa.Table
    source: str  # IDB table name; staging is stg_<source>
    start: str  # SQL of the start timestamp (partition key)
    columns: dict[str, str]  # fact column -> SQL over alias s and the joins
    joins: str = ""
    checks: tuple[tuple[str, str], ...] = ()  # (condition, reason SQL) -> discard
    where: str = "true"  # which source rows belong to this fact


def _agent(alias: str = "da", column: str = "s.agent_id") -> str:
    return (
        f"LEFT JOIN dim_agent {alias} ON {alias}.idb_id = s.idb_id AND {alias}.source_id = {column}"
    )


def _unknown(column: str, key: str, what: str) -> tuple[str, str]:
    return (f"{column} IS NOT NULL AND {key} IS NULL", f"'unknown {what} id ' || {column}")


def _ends_before(end: str, start: str) -> tuple[str, str]:
    return (f"{end} < {start}", f"'ends before it starts ({end} < {start})'")


FACTS: tuple[FactSpec, ...] = (
    FactSpec(
        mart.interaction_fact,
        "interaction",
        "s.created_at",
        {
            "end_ts": "s.ended_at",
            "media_type_key": "dm.media_type_key",
            "direction": "s.direction",
            "customer_segment_key": "cs.business_attribute_key",
            "service_type_key": "st.business_attribute_key",
            "status": "s.status",
            "duration_seconds": _seconds("s.ended_at", "s.created_at"),
        },
        joins="LEFT JOIN dim_media_type dm ON dm.idb_id = s.idb_id "
        "AND dm.source_id = s.media_type_id "
        "LEFT JOIN dim_business_attribute cs ON cs.idb_id = s.idb_id "
        "AND cs.source_id = s.customer_segment_id "
        "LEFT JOIN dim_business_attribute st ON st.idb_id = s.idb_id "
        "AND st.source_id = s.service_type_id",
        checks=(_ends_before("s.ended_at", "s.created_at"),),
    ),
    FactSpec(
        mart.interaction_segment_fact,
        "party_segment",
        "s.queued_at",
        {
            "interaction_id": "s.interaction_id",
            "seq": "s.seq",
            "end_ts": "s.ended_at",
            "queue_key": "dq.queue_key",
            "agent_key": "da.agent_key",
            "outcome": "s.outcome",
            "wait_seconds": _seconds("coalesce(s.routed_at, s.ended_at)", "s.queued_at"),
            "ring_seconds": _seconds("s.talk_start_at", "s.ringing_at"),
            "talk_seconds": _seconds("s.wrap_start_at", "s.talk_start_at")
            + " - coalesce(s.hold_seconds, 0)",
            "hold_seconds": "s.hold_seconds",
            "wrap_seconds": _seconds("s.ended_at", "s.wrap_start_at"),
            "answered_in_service_level": "s.routed_at IS NOT NULL AND s.routed_at - s.queued_at "
            "<= make_interval(secs => coalesce(dq.service_level_seconds, 20))",
        },
        joins="LEFT JOIN dim_queue dq ON dq.idb_id = s.idb_id AND dq.source_id = s.queue_id "
        + _agent(),
        checks=(
            _ends_before("s.ended_at", "s.queued_at"),
            _unknown("s.queue_id", "dq.queue_key", "queue"),
            _unknown("s.agent_id", "da.agent_key", "agent"),
        ),
    ),
    FactSpec(
        mart.agent_session_fact,
        "agent_session",
        "s.login_at",
        {
            "end_ts": "s.logout_at",
            "agent_key": "da.agent_key",
            "duration_seconds": _seconds("s.logout_at", "s.login_at"),
        },
        joins=_agent(),
        checks=(
            _ends_before("s.logout_at", "s.login_at"),
            _unknown("s.agent_id", "da.agent_key", "agent"),
        ),
    ),
    FactSpec(
        mart.agent_state_fact,
        "agent_state",
        "s.started_at",
        {
            "end_ts": "s.ended_at",
            "session_id": "s.session_id",
            "agent_key": "da.agent_key",
            "state": "s.state",
            "duration_seconds": _seconds("s.ended_at", "s.started_at"),
        },
        joins=_agent(),
        checks=(
            _ends_before("s.ended_at", "s.started_at"),
            _unknown("s.agent_id", "da.agent_key", "agent"),
        ),
    ),
    FactSpec(
        mart.agent_state_reason_fact,
        "agent_state",
        "s.started_at",
        {
            "end_ts": "s.ended_at",
            "agent_key": "da.agent_key",
            "state_reason_key": "dr.state_reason_key",
            "duration_seconds": _seconds("s.ended_at", "s.started_at"),
        },
        joins=_agent() + " LEFT JOIN dim_state_reason dr ON dr.idb_id = s.idb_id "
        "AND dr.source_id = s.reason_id",
        checks=(
            _ends_before("s.ended_at", "s.started_at"),
            _unknown("s.agent_id", "da.agent_key", "agent"),
            _unknown("s.reason_id", "dr.state_reason_key", "state reason"),
        ),
        where="s.reason_id IS NOT NULL",
    ),
    FactSpec(
        mart.campaign_attempt_fact,
        "campaign_attempt",
        "s.dialed_at",
        {
            "campaign_key": "dc.campaign_key",
            "agent_key": "da.agent_key",
            "result": "s.result",
            "talk_seconds": "s.talk_seconds",
        },
        joins="LEFT JOIN dim_campaign dc ON dc.idb_id = s.idb_id "
        "AND dc.source_id = s.campaign_id " + _agent(),
        checks=(
            _unknown("s.campaign_id", "dc.campaign_key", "campaign"),
            _unknown("s.agent_id", "da.agent_key", "agent"),
        ),
    ),
)

#: Dimension upserts from configuration staging (SCD type 1: current values).
DIMENSIONS: tuple[tuple[sa.Table, str, dict[str, str]], ...] = (
    (mart.dim_media_type, "stg_media_type s", {"name": "s.name"}),
    (
        mart.dim_agent,
        "stg_agent s LEFT JOIN stg_agent_group g ON g.idb_id = s.idb_id "
        "AND g.id = s.agent_group_id",
        {
            "login": "s.login",
            "first_name": "s.first_name",
            "last_name": "s.last_name",
            "agent_group": "g.name",
        },
    ),
    (
        mart.dim_queue,
        "stg_queue s LEFT JOIN stg_queue_group g ON g.idb_id = s.idb_id "
        "AND g.id = s.queue_group_id LEFT JOIN stg_media_type m "
        "ON m.idb_id = s.idb_id AND m.id = s.media_type_id",
        {
            "name": "s.name",
            "queue_group": "g.name",
            "media_type": "m.name",
            "service_level_seconds": "s.service_level_seconds",
        },
    ),
    (mart.dim_campaign, "stg_campaign s", {"name": "s.name"}),
    (mart.dim_state_reason, "stg_state_reason s", {"code": "s.code", "name": "s.name"}),
    (
        mart.dim_business_attribute,
        "stg_business_attribute s",
        {"kind": "s.kind", "value": "s.value"},
    ),
)
TRAFFIC_SOURCES = tuple(dict.fromkeys(spec.source for spec in FACTS))


def load_dimensions(conn: Connection) -> int:
    """Upsert every dimension from configuration staging (small tables: all rows, every run)."""
    changed = 0
    for table, source, columns in DIMENSIONS:
        names = ", ".join(columns)
        values = ", ".join(columns.values())
        updates = ", ".join(f"{name} = excluded.{name}" for name in columns)
        distinct = " OR ".join(
            f"{table.name}.{name} IS DISTINCT FROM excluded.{name}" for name in columns
        )
        result = conn.execute(
            sa.text(
                f"INSERT INTO {table.name} (idb_id, source_id, {names}) "
                f"SELECT s.idb_id, s.id, {values} FROM {source} "
                f"ON CONFLICT (idb_id, source_id) DO UPDATE SET {updates} WHERE {distinct}"
            )
        )
        changed += int(result.rowcount or 0)

    return changed


def discard_reason(spec: FactSpec) -> str:
    """SQL of why a source row of ``spec`` is discarded (R3), NULL when it is loaded."""
    checks = [
        (
            "s.{} IS NULL".format(spec.start.removeprefix("s.")),
            f"'missing {spec.start.removeprefix('s.')}'",
        ),
        *spec.checks,
    ]
    return "CASE " + " ".join(f"WHEN {cond} THEN {reason}" for cond, reason in checks) + " END"


def _batch_rows(spec: FactSpec, first: bool) -> str:
    """The batch's source rows of a fact, with their ``load_seq``, discard reason and
    expressions. ``first``: the batch is the next ``:n`` staging rows past ``:mark`` in
    ``load_seq`` order (an index range scan with a limit), so the first fact of a source finds
    the batch's end itself; the others read ``:mark < load_seq <= :last`` (the same rows)."""
    expressions = ", ".join(f"{expr} AS {name}" for name, expr in spec.columns.items())
    if first:
        rows = (
            f"(SELECT * FROM stg_{spec.source} WHERE load_seq > :mark ORDER BY load_seq LIMIT :n) s"
        )
        where = spec.where
    else:
        rows = f"stg_{spec.source} s"
        where = f"s.load_seq > :mark AND s.load_seq <= :last AND {spec.where}"
    return (
        f"SELECT s.idb_id, s.id, s.load_seq, {spec.start} AS start_ts, "
        f"{key_sql(spec.start)} AS date_time_key, "
        f"{discard_reason(spec)} AS discard_reason, {expressions} "
        f"FROM {rows} {spec.joins} WHERE {where}"
    )


@dataclass(frozen=True)
class Staged:
    """One fact's rows of a batch, computed into a temporary table, and what one scan of that
    table says about them."""

    spec: FactSpec
    table: str
    rows: int  # source rows
    last: int  # the highest load_seq among them (0 without rows)
    keys: list[int]  # the 15-minute intervals of its loadable rows
    idbs: list[int]  # the IDBs its rows come from
    discards: int  # rows discarded (R3)
    lowest: int | None  # the lowest source id of its loadable rows


def stage_fact(
    conn: Connection, spec: FactSpec, table: str, mark: int, last: int | None, limit: int = 0
) -> Staged:
    """Compute the batch's rows of one fact into the temporary ``table``: with ``last`` the
    staging rows with ``mark < load_seq <= last``, without it the next ``limit`` rows past
    ``mark`` (the source's first fact, which must take every row: ``where`` true)."""
    if last is None and spec.where != "true":
        raise ValueError(f"{spec.fact.name} keeps only some rows: it cannot bound a batch")
    conn.execute(
        sa.text(f"CREATE TEMP TABLE {table} ON COMMIT DROP AS {_batch_rows(spec, last is None)}"),
        {"mark": mark, "last": last, "n": limit},
    )
    # Real row counts for the planner: without them it guesses a few hundred rows and joins
    # the batch to discard by nested loop, whose cost then grows with the discards kept. A
    # small sample is enough for counts and the share of discards (the default target reads
    # most of a batch: issue 40 measured it at a tenth of Transform's statement time).
    conn.execute(sa.text("SET LOCAL default_statistics_target = 10"))
    conn.execute(sa.text(f"ANALYZE {table} (idb_id, id, discard_reason)"))
    rows, end, keys, idbs, discards, lowest = conn.execute(
        sa.text(
            "SELECT count(*), coalesce(max(load_seq), 0), "
            "array_agg(DISTINCT date_time_key) FILTER (WHERE discard_reason IS NULL), "
            "array_agg(DISTINCT idb_id), count(*) FILTER (WHERE discard_reason IS NOT NULL), "
            f"min(id) FILTER (WHERE discard_reason IS NULL) FROM {table}"
        )
    ).one()
    return Staged(
        spec,
        table,
        int(rows),
        int(end),
        sorted(keys or ()),
        sorted(idbs or ()),
        int(discards),
        lowest,
    )


def prepare_intervals(conn: Connection, staged: list[Staged], tz: str) -> None:
    """Day partitions for every staged fact, then the DATE_TIME rows of all their intervals.

    Lock order, which keeps sources transformed in parallel free of deadlocks: every batch
    takes the partition lock (if it needs a partition) before any DATE_TIME row, and inserts
    DATE_TIME rows in ascending key order. A batch waiting for a key another batch inserted
    never holds a key above it, and the other batch, past its partitions, never waits for the
    partition lock."""
    for one in staged:
        ensure_partitions(
            conn, one.spec.fact.name, {datetime.fromtimestamp(key, UTC).date() for key in one.keys}
        )
    every = sorted({key for one in staged for key in one.keys})
    conn.execute(
        sa.text(insert_keys_sql("SELECT k FROM unnest(CAST(:keys AS bigint[])) k ORDER BY k")),
        {"tz": tz, "keys": every},
    )


def load_fact(conn: Connection, staged: Staged, run_id: int | None) -> tuple[int, int]:
    """Write the staged rows into the fact and discards; tell aggregation which intervals
    changed. Returns (fact rows written, rows discarded)."""
    spec, table, idbs = staged.spec, staged.table, staged.idbs
    id_column = [c.name for c in spec.fact.primary_key.columns][1]
    conn.execute(
        sa.text(
            "INSERT INTO agg_pending (fact, date_time_key) SELECT :fact, "
            "unnest(CAST(:keys AS bigint[])) ON CONFLICT DO NOTHING"
        ),
        {"fact": spec.fact.name, "keys": staged.keys},
    )
    # Each discard statement only when it has work: a batch without discards writes none, and
    # a discard can only be removed by a loadable row of the same IDB and source id, so only
    # when one exists at or above the batch's lowest loadable id (one probe of the discard
    # key). A first load, whose batches follow the ids, never needs the removal: each skip
    # saves a join of the whole batch with the discards kept (issue 40). Removal first: a
    # source row is once in a batch (staging's key), so the two never touch the same row.
    kept = (
        staged.lowest is not None
        and conn.execute(
            sa.text(
                "SELECT EXISTS (SELECT FROM discard WHERE idb_id = ANY(CAST(:idbs AS smallint[])) "
                "AND source_table = :source AND source_id >= :lowest)"
            ),
            {"idbs": idbs, "source": spec.fact.name, "lowest": staged.lowest},
        ).scalar_one()
    )
    if kept:
        conn.execute(
            sa.text(
                f"DELETE FROM discard d USING {table} r WHERE r.discard_reason IS NULL "
                "AND d.idb_id = r.idb_id AND d.source_table = :source AND d.source_id = r.id "
                "AND d.source_id >= :lowest"
            ),
            {"source": spec.fact.name, "lowest": staged.lowest},
        )
    discarded = 0
    if staged.discards:
        discarded = (
            conn.execute(
                sa.text(
                    "INSERT INTO discard (run_id, idb_id, source_table, source_id, reason, "
                    "payload) SELECT :run, r.idb_id, :source, r.id, r.discard_reason, "
                    f"to_jsonb(s) FROM {table} r JOIN stg_{spec.source} s "
                    "ON s.idb_id = r.idb_id AND s.id = r.id WHERE r.discard_reason IS NOT NULL "
                    "ON CONFLICT (idb_id, source_table, source_id) "
                    "DO UPDATE SET reason = excluded.reason, payload = excluded.payload, "
                    "run_id = excluded.run_id, discarded_at = now()"
                ),
                {"run": run_id, "source": spec.fact.name},
            ).rowcount
            or 0
        )
    columns = list(spec.columns)
    names = ", ".join(columns)
    updates = ", ".join(f"{name} = excluded.{name}" for name in [*columns, "run_id"])
    # Rows with a source id above the fact's highest for their IDB cannot be in the fact yet:
    # plain INSERT (an upsert costs about 40 % more per row); the rest are upserted. This
    # holds because the fact's only writer is this source's batch (Transform is single
    # instance, S2, and fenced; one thread per source) and a fact loses rows only by whole
    # expired partitions, never above its highest id. Were it wrong, the primary key would
    # refuse the row and the batch would roll back: no fact is ever stored twice.
    highest = [
        conn.execute(
            # One backward index probe per partition (the primary key leads with idb_id, id).
            sa.text(
                f"SELECT coalesce(max({id_column}), 0) FROM {spec.fact.name} WHERE idb_id = :i"
            ),
            {"i": idb},
        ).scalar_one()
        for idb in idbs
    ]
    insert = (
        f"INSERT INTO {spec.fact.name} (idb_id, {id_column}, start_ts, date_time_key, "
        f"{names}, run_id) SELECT r.idb_id, r.id, start_ts, date_time_key, {names}, :run "
        f"FROM {table} r JOIN unnest(CAST(:idbs AS smallint[]), CAST(:highest AS bigint[])) "
        "AS h(idb_id, hi) ON h.idb_id = r.idb_id WHERE discard_reason IS NULL AND r.id "
    )
    written = 0
    statements = [f"{insert} > h.hi"]
    if staged.lowest is not None and staged.lowest <= max(highest, default=0):
        # Some row may be in the fact already (a first load never gets here: one scan saved).
        statements.insert(
            0,
            f"{insert} <= h.hi ON CONFLICT (idb_id, {id_column}, start_ts) DO UPDATE SET {updates}",
        )
    for statement in statements:
        written += (
            conn.execute(
                sa.text(statement), {"run": run_id, "idbs": idbs, "highest": highest}
            ).rowcount
            or 0
        )
    conn.execute(sa.text(f"DROP TABLE {table}"))
    return int(written), int(discarded)


@dataclass
class SourceProgress:
    read: int = 0
    written: int = 0
    discarded: int = 0
    per_fact: dict[str, int] = field(default_factory=dict)


def _mark(conn: Connection, source: str) -> int:
    """Transform's mark of a source (0 when it never ran), locked for this transaction."""
    conn.execute(
        sa.text("INSERT INTO transform_mark (source) VALUES (:s) ON CONFLICT DO NOTHING"),
        {"s": source},
    )
    return int(
        conn.execute(
            sa.text("SELECT last_load_seq FROM transform_mark WHERE source = :s FOR UPDATE"),
            {"s": source},
        ).scalar_one()
    )


def transform_source(
    ctx: JobContext,
    source: str,
    specs: list[FactSpec],
    time_zone: str,
    counting: threading.Lock | None = None,
    abort: threading.Event | None = None,
    batch_rows: int = BATCH_ROWS,
) -> SourceProgress:
    """Every staging row of one source past Transform's mark, batch by batch (one transaction
    each, mark included). Staging rows are never rewritten by Transform: the mark moves.
    ``counting`` guards the run's counters when sources run in threads; ``abort`` is set when
    another source failed."""
    progress = SourceProgress()
    counting = counting or threading.Lock()
    while True:
        ctx.stop.check()
        if abort is not None and abort.is_set():
            raise Aborted("another source failed")
        with ctx.transaction(batch=True) as conn:
            mark = _mark(conn, f"stg_{source}")
            # The batch is the next batch_rows staging rows past the mark, in load_seq order;
            # the source's first fact reads them and so finds the batch's end (last), the
            # others read mark < load_seq <= last. No row can enter that range later: staging
            # writers are serialised and take load_seq in commit order (extract.py). A row
            # Extract rewrites meanwhile leaves the range for a higher load_seq and is
            # transformed, newest version, in a later batch.
            first = stage_fact(conn, specs[0], "fact_rows_0", mark, None, batch_rows)
            rows, last = first.rows, first.last
            if rows == 0:
                break
            staged = [first] + [
                stage_fact(conn, spec, f"fact_rows_{i}", mark, last)
                for i, spec in enumerate(specs[1:], start=1)
            ]
            # Partitions and DATE_TIME rows in a short transaction of their own, committed
            # before this batch writes a fact: the two sources transformed at once need the
            # same new intervals, and a DATE_TIME row inserted in a batch transaction would
            # hold the other source's insert of it until that whole batch commits (issue 40:
            # measured as a tenth of Transform's statement time spent waiting). Calendar rows
            # and empty partitions are harmless if this batch then rolls back.
            with ctx.transaction() as calendar:
                prepare_intervals(calendar, staged, time_zone)
            for one in staged:
                written, discarded = load_fact(conn, one, ctx.run_id)
                progress.written += written
                progress.discarded += discarded
                name = one.spec.fact.name
                progress.per_fact[name] = progress.per_fact.get(name, 0) + written
            conn.execute(
                sa.text(
                    "UPDATE transform_mark SET last_load_seq = :last, updated_at = now() "
                    "WHERE source = :s"
                ),
                {"last": last, "s": f"stg_{source}"},
            )
        progress.read += rows
        with counting:
            ctx.counts.read += rows
            ctx.progress(f"transform {source}", progress.read, None)
    return progress


def run(ctx: JobContext) -> None:
    """Job_TransformGIM: dimensions, then every traffic source, ``parallel-tables`` of them at
    once. Sources share nothing a batch writes but DATE_TIME rows and the partition
    lock, taken in one order (:func:`prepare_intervals`); each has its own mark, facts,
    discards (by source table) and pending intervals (by fact)."""
    time_zone = str(ctx.options.get("schedule", "timezone"))
    parallel = int(ctx.options.get("gim-etl", "parallel-tables"))
    with ctx.transaction() as conn:
        dimensions = load_dimensions(conn)
    counting = threading.Lock()

    def one(source: str, failed: threading.Event) -> SourceProgress:
        # The fact that takes every row of the source first: it bounds each batch.
        specs = sorted(
            (spec for spec in FACTS if spec.source == source), key=lambda s: s.where != "true"
        )
        return transform_source(ctx, source, specs, time_zone, counting, failed)

    results = in_parallel(parallel, TRAFFIC_SOURCES, one, "transform")
    per_fact: dict[str, int] = {}
    discarded = 0
    for progress in results:
        ctx.counts.written += progress.written
        discarded += progress.discarded
        for name, count in progress.per_fact.items():
            per_fact[name] = per_fact.get(name, 0) + count
    ctx.counts.discarded += discarded
    if discarded:
        ctx.counts.warnings += 1  # R3: the run completes with warnings
    ctx.counts.summary.update(
        {"dimension_rows_changed": dimensions, "facts": per_fact, "discarded": discarded}
    )
    log.info(
        "transformed %d staging rows (%s), %d discarded",
        ctx.counts.read,
        ctx.rate(ctx.counts.read),
        discarded,
    )
