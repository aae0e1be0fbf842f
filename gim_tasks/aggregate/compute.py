"""Set-based aggregation SQL, generated from the registry (SPEC D3).

:func:`rebuild` recomputes, in the caller's transaction, every aggregate row that depends on a
set of 15-minute intervals (temporary table ``agg_keys(k)``): SUBHOUR from the facts, then each
higher level from the level below, bucket by bucket. Old rows are deleted and new ones inserted
in one transaction, so a reader sees either the old or the new aggregates, never a hole (M4).

:func:`verify` recomputes every level directly from the facts (not by roll-up) and compares.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gim_tasks.aggregate.registry import (
    BUCKETS,
    BY_NAME,
    HIERARCHIES,
    LEVELS,
    Hierarchy,
    aggregate_metadata,
)
from gim_tasks.db import locks


def ensure_tables(conn: Connection) -> None:
    """Create missing aggregate tables and add measures the registry gained since they were
    created (idempotent; one creator at a time: a transaction-scoped advisory lock).

    A measure added to an existing table starts at 0 for the rows already there, so the
    hierarchy is queued for a full re-aggregation (M4) of the days it holds, in the same
    transaction: the next aggregation pass fills the new column from the facts."""
    locks.hold(conn, locks.AGGREGATE_TABLES)
    aggregate_metadata.create_all(conn, checkfirst=True)
    present = {
        (row.table_name, row.column_name)
        for row in conn.execute(
            sa.text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name LIKE 'agg\\_%'"
            )
        )
    }
    stale = []
    for h in HIERARCHIES:
        for level in LEVELS:
            table = h.table(level)
            for name, _ in h.measures:
                if (table, name) not in present:
                    conn.execute(
                        sa.text(f"ALTER TABLE {table} ADD COLUMN {name} bigint NOT NULL DEFAULT 0")
                    )
                    if h.name not in stale:
                        stale.append(h.name)
    if not stale:
        return
    held_from = _first_day_of_held_facts(conn)
    for name in stale:
        span = conn.execute(
            sa.text(
                f"SELECT min(bucket)::date, max(bucket)::date FROM {BY_NAME[name].table('DAY')}"
            )
        ).one()
        if span[0] is None:
            continue
        # D5: only the days whose facts are still held (older days keep 0 for the measure:
        # rebuilding them from purged facts would empty them).
        start = max(span[0], held_from)
        if start > span[1]:
            continue
        params = {
            "hierarchies": [name],
            "level": "SUBHOUR",
            "flavor": None,
            "start": start.isoformat(),
            "end": span[1].isoformat(),
        }
        conn.execute(
            sa.text(
                "INSERT INTO agg_request (params, requested_by) "
                "VALUES (CAST(:p AS jsonb), 'gim-tasks: new measure')"
            ),
            {"p": json.dumps(params)},
        )


def _first_day_of_held_facts(conn: Connection) -> date:
    """D5: the first local day whose facts are all still held (the options in force, now)."""
    from gim_tasks.aggregate.retention import load_holdings
    from gim_tasks.aggregate.safety import first_whole_day
    from gim_tasks.options.store import load_options
    from gim_tasks.schedule.localtime import zone

    options = load_options(conn)
    held = load_holdings(conn, options, datetime.now(UTC), calendar=False)
    return first_whole_day(held.facts_from, zone(options.text("schedule", "timezone")))


def _groups(h: Hierarchy) -> tuple[str, str]:
    names = ", ".join(name for name, _ in h.groups)
    exprs = ", ".join(f"{expr} AS {name}" for name, expr in h.groups)
    return names, exprs


def _subhour(h: Hierarchy, where: str) -> str:
    names, exprs = _groups(h)
    measures = ", ".join(f"{expr} AS {name}" for name, expr in h.measures)
    return (
        f"SELECT f.date_time_key, {exprs}, {measures} FROM {h.fact} f {h.joins} "
        f"WHERE {where} GROUP BY f.date_time_key, {names}"
    )


@dataclass(frozen=True)
class Intervals:
    """The changed 15-minute intervals of one transaction (temporary table ``agg_keys(k)``)
    and, once per set rather than once per hierarchy, the bucket of every level they touch
    (``agg_b_hour`` … ``agg_b_year``)."""

    lo: int
    hi: int  # the last interval's end (exclusive)
    count: int


def open_intervals(conn: Connection, select_keys: str, params: dict[str, Any]) -> Intervals | None:
    """Create ``agg_keys`` from ``select_keys`` (one column of interval keys) and the bucket
    tables; ``None`` when there is no interval. Dropped by :func:`close_intervals` or at commit."""
    conn.execute(
        sa.text(
            "CREATE TEMP TABLE agg_keys ON COMMIT DROP AS SELECT DISTINCT k "
            f"FROM ({select_keys}) x(k)"
        ),
        params,
    )
    # Statistics for the planner, and literal bounds so that only the partitions of the
    # changed days are read (plan-time pruning) and the date_time_key index is used.
    conn.execute(sa.text("ANALYZE agg_keys"))
    lo, hi, count = conn.execute(sa.text("SELECT min(k), max(k), count(*) FROM agg_keys")).one()
    if lo is None:
        conn.execute(sa.text("DROP TABLE agg_keys"))
        return None
    for level in LEVELS[1:]:
        conn.execute(
            sa.text(
                f"CREATE TEMP TABLE agg_b_{level.lower()} ON COMMIT DROP AS SELECT DISTINCT "
                f"{BUCKETS[level]} AS b FROM date_time d WHERE d.date_time_key IN "
                "(SELECT k FROM agg_keys)"
            )
        )
        conn.execute(sa.text(f"ANALYZE agg_b_{level.lower()}"))
    return Intervals(lo, hi + 900, count)


def close_intervals(conn: Connection) -> None:
    tables = ", ".join(["agg_keys"] + [f"agg_b_{level.lower()}" for level in LEVELS[1:]])
    conn.execute(sa.text(f"DROP TABLE {tables}"))


def rebuild(
    conn: Connection,
    h: Hierarchy,
    keys: Intervals,
    from_level: str = "SUBHOUR",
    delta: bool = False,
) -> int:
    """Recompute the rows of ``h`` for the intervals ``keys`` from ``from_level`` up; returns
    the rows written.

    ``delta`` (incremental passes): MONTH is updated as old MONTH - old DAY + new DAY for the
    changed days instead of being summed again from every DAY of the month, and QUARTER and
    YEAR likewise from the MONTH and QUARTER rows before and after, so the cost of a pass does
    not grow with the days already in the month or the months in the quarter (issues 6, 17).
    This relies on the tables being consistent, which only one writer at a time keeps true:
    the aggregation job's single-instance rule (S2, the run claim and its fence) serialises
    every writer of these tables. Re-aggregation (M4) exists to repair tables, so it always
    sums from the level below.
    """
    names, _ = _groups(h)
    sums = ", ".join(f"sum({name})::bigint" for name, _ in h.measures)
    measure_names = ", ".join(name for name, _ in h.measures)
    columns = f"bucket, {names}, {measure_names}"
    bounds = {"lo": keys.lo, "hi": keys.hi}
    written = 0
    start = LEVELS.index(from_level)
    if start == 0:
        table = h.table("SUBHOUR")
        conn.execute(
            sa.text(
                f"DELETE FROM {table} WHERE date_time_key BETWEEN :lo AND :hi "
                "AND date_time_key IN (SELECT k FROM agg_keys)"
            ),
            bounds,
        )
        written += (
            conn.execute(
                sa.text(
                    f"INSERT INTO {table} (date_time_key, {names}, {measure_names}) "
                    + _subhour(
                        h,
                        "f.start_ts >= to_timestamp(:lo) AND f.start_ts < "
                        "to_timestamp(:hi) AND f.date_time_key IN (SELECT k FROM agg_keys)",
                    ),
                ),
                bounds,
            ).rowcount
            or 0
        )

    def statements(level: str) -> tuple[str, str]:
        """The DELETE of the touched buckets of ``level`` and the INSERT of their new rows,
        summed from the level below. Every lookup is an index range scan, so the cost follows
        the changed intervals, not the history (bench: ./dev bench aggregate)."""
        below = LEVELS[LEVELS.index(level) - 1]
        table, lower, buckets = h.table(level), h.table(below), f"agg_b_{level.lower()}"
        if below == "SUBHOUR":
            inner = BUCKETS[level].replace("d.", "d2.")
            source = (
                f"SELECT {BUCKETS[level]} AS bucket, {names}, {sums} FROM {lower} s "
                "JOIN date_time d ON d.date_time_key = s.date_time_key "
                "WHERE s.date_time_key IN (SELECT d2.date_time_key FROM date_time d2 "
                f"WHERE d2.date_time_key BETWEEN {keys.lo - 86400} AND {keys.hi + 86400} "
                f"AND {inner} IN (SELECT b FROM {buckets})) GROUP BY 1, {names}"
            )
        else:
            span = {"DAY": "1 day", "MONTH": "1 month", "QUARTER": "3 months", "YEAR": "1 year"}[
                level
            ]
            source = (
                f"SELECT ab.b AS bucket, {names}, {sums} FROM {buckets} ab "
                f"JOIN {lower} l ON l.bucket >= ab.b AND l.bucket < ab.b + "
                f"interval '{span}' GROUP BY 1, {names}"
            )
        return (
            f"DELETE FROM {table} WHERE bucket IN (SELECT b FROM {buckets})",
            f"INSERT INTO {table} ({columns}) {source}",
        )

    level_index = max(start, 1)
    while level_index < len(LEVELS):
        level = LEVELS[level_index]
        delete, insert = statements(level)
        if delta and level == "DAY":
            # DAY and every level above in one statement, each as old - old below + new
            # below: DAY rows before (day_old) and after (day_new) give MONTH as old MONTH -
            # old DAY + new DAY, the MONTH rows before and after give QUARTER the same way,
            # and QUARTER gives YEAR, so no level re-reads the rest of its period (issue 17:
            # the cost of a pass no longer grows with the months of a quarter). A group whose
            # row count reaches zero has no fact left in the period and goes. GROUP BY treats
            # NULL group values as equal, as the full roll-up does.
            negated = ", ".join(f"-{name}" for name, _ in h.measures)
            ctes = [f"day_old AS ({delete} RETURNING {columns})"]
            ctes.append(f"day_new AS ({insert} RETURNING {columns})")
            below = "day"
            for upper, unit in (("MONTH", "month"), ("QUARTER", "quarter"), ("YEAR", "year")):
                name = upper.lower()
                upper_delete, _ = statements(upper)
                ctes.append(f"{name}_old AS ({upper_delete} RETURNING {columns})")
                ctes.append(
                    f"{name}_new AS (INSERT INTO {h.table(upper)} ({columns}) "
                    f"SELECT bucket, {names}, {sums} FROM (SELECT {columns} FROM {name}_old "
                    f"UNION ALL SELECT date_trunc('{unit}', bucket), {names}, {negated} "
                    f"FROM {below}_old UNION ALL SELECT date_trunc('{unit}', bucket), {names}, "
                    f"{measure_names} FROM {below}_new) x GROUP BY 1, {names} "
                    f"HAVING sum({h.rows_measure}) <> 0 RETURNING {columns})"
                )
                below = name
            counts = ", ".join(
                f"(SELECT count(*) FROM {name}_new)" for name in ("day", "month", "quarter", "year")
            )
            row = conn.execute(sa.text(f"WITH {', '.join(ctes)} SELECT {counts}")).one()
            written += sum(row)
            break
        conn.execute(sa.text(delete))
        written += conn.execute(sa.text(insert)).rowcount or 0
        level_index += 1
    return written


def keys_for_days(start: Any, end: Any) -> tuple[str, dict[str, Any]]:
    """The query of the intervals of local days start..end (inclusive), for
    :func:`open_intervals`."""
    return (
        "SELECT date_time_key FROM date_time WHERE local_date BETWEEN :a AND :b",
        {"a": start, "b": end},
    )


def fact_day_span(conn: Connection) -> tuple[date, date] | None:
    """The first and last local day holding facts (what ``verify`` checks by default), or None
    without facts. ``date_time_key`` is the interval's epoch, so the smallest and largest keys
    of each fact table are its first and last intervals (index lookups, no scan)."""
    keys = " UNION ALL ".join(
        f"(SELECT min(date_time_key) AS k FROM {fact}) UNION ALL "
        f"(SELECT max(date_time_key) FROM {fact})"
        for fact in sorted({h.fact for h in HIERARCHIES})
    )
    first, last = conn.execute(
        sa.text(
            "SELECT min(d.local_date), max(d.local_date) FROM date_time d "
            f"WHERE d.date_time_key IN ({keys})"
        )
    ).one()
    return None if first is None else (first, last)


def verify(
    conn: Connection, h: Hierarchy, start: Any, end: Any, levels: tuple[str, ...] = LEVELS
) -> list[dict[str, Any]]:
    """Compare each level of ``h`` (of ``levels``) over local days start..end with a direct
    recomputation from the facts. Returns one entry per table with differences."""
    names, exprs = _groups(h)
    measures = ", ".join(f"{expr} AS {name}" for name, expr in h.measures)
    measure_names = ", ".join(name for name, _ in h.measures)
    days = "d.local_date BETWEEN :a AND :b"
    details = []
    for level in levels:
        table = h.table(level)
        if level == "SUBHOUR":
            key = "date_time_key"
            expected = (
                f"SELECT f.date_time_key, {exprs}, {measures} FROM {h.fact} f "
                f"JOIN date_time d ON d.date_time_key = f.date_time_key {h.joins} "
                f"WHERE {days} GROUP BY f.date_time_key, {names}"
            )
            actual = (
                f"SELECT t.date_time_key, {names}, {measure_names} FROM {table} t "
                f"JOIN date_time d ON d.date_time_key = t.date_time_key WHERE {days}"
            )
        else:
            key = "bucket"
            bucket = BUCKETS[level]
            expected = (
                f"SELECT {bucket} AS bucket, {exprs}, {measures} FROM {h.fact} f "
                f"JOIN date_time d ON d.date_time_key = f.date_time_key {h.joins} "
                f"WHERE {bucket} IN (SELECT DISTINCT {bucket} FROM date_time d "
                f"WHERE {days}) GROUP BY 1, {names}"
            )
            actual = (
                f"SELECT {key}, {names}, {measure_names} FROM {table} WHERE {key} IN "
                f"(SELECT DISTINCT {bucket} FROM date_time d WHERE {days})"
            )
        missing = conn.execute(
            sa.text(f"SELECT count(*) FROM (({expected}) EXCEPT ALL ({actual})) x"),
            {"a": start, "b": end},
        ).scalar_one()
        extra = conn.execute(
            sa.text(f"SELECT count(*) FROM (({actual}) EXCEPT ALL ({expected})) x"),
            {"a": start, "b": end},
        ).scalar_one()
        if missing or extra:
            details.append({"table": table, "missing_or_different": missing, "extra": extra})
    return details
