"""Set-based aggregation SQL, generated from the registry (SPEC D3).

:func:`rebuild` recomputes, in the caller's transaction, every aggregate row that depends on a
set of 15-minute intervals (temporary table ``agg_keys(k)``): SUBHOUR from the facts, then each
higher level from the level below, bucket by bucket. Old rows are deleted and new ones inserted
in one transaction, so a reader sees either the old or the new aggregates, never a hole (M4).

:func:`verify` recomputes every level directly from the facts (not by roll-up) and compares.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gim_tasks.aggregate.registry import BUCKETS, LEVELS, Hierarchy, aggregate_metadata

AGG_TABLES_LOCK_KEY = 0x67696D5F616767  # "gim_agg"


def ensure_tables(conn: Connection) -> None:
    """Create missing aggregate tables (idempotent; one creator at a time)."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(AGG_TABLES_LOCK_KEY)))
    aggregate_metadata.create_all(conn, checkfirst=True)


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


def rebuild(conn: Connection, h: Hierarchy, from_level: str = "SUBHOUR") -> int:
    """Recompute the rows of ``h`` for the intervals in ``agg_keys`` from ``from_level`` up."""
    names, _ = _groups(h)
    sums = ", ".join(f"sum({name})::bigint" for name, _ in h.measures)
    measure_names = ", ".join(name for name, _ in h.measures)
    written = 0
    start = LEVELS.index(from_level)
    # Statistics for the planner, and literal bounds so that only the partitions of the
    # changed days are read (plan-time pruning) and the date_time_key index is used.
    conn.execute(sa.text("ANALYZE agg_keys"))
    lo, hi = conn.execute(sa.text("SELECT min(k), max(k) FROM agg_keys")).one()
    if lo is None:
        return 0
    bounds = {"lo": lo, "hi": hi + 900}
    if start == 0:
        table = h.table("SUBHOUR")
        conn.execute(
            sa.text(f"DELETE FROM {table} WHERE date_time_key IN (SELECT k FROM agg_keys)")
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
    for index in range(max(start, 1), len(LEVELS)):
        level, below = LEVELS[index], LEVELS[index - 1]
        table, lower = h.table(level), h.table(below)
        conn.execute(
            sa.text(
                f"CREATE TEMP TABLE agg_buckets ON COMMIT DROP AS SELECT DISTINCT "
                f"{BUCKETS[level]} AS b FROM date_time d WHERE d.date_time_key IN "
                "(SELECT k FROM agg_keys)"
            )
        )
        conn.execute(sa.text("ANALYZE agg_buckets"))
        conn.execute(sa.text(f"DELETE FROM {table} WHERE bucket IN (SELECT b FROM agg_buckets)"))
        # Every lookup below is an index range scan, so the cost follows the changed
        # intervals, not the history (bench: ./dev bench aggregate).
        if below == "SUBHOUR":
            inner = BUCKETS[level].replace("d.", "d2.")
            source = (
                f"SELECT {BUCKETS[level]} AS bucket, {names}, {sums} FROM {lower} s "
                "JOIN date_time d ON d.date_time_key = s.date_time_key "
                "WHERE s.date_time_key IN (SELECT d2.date_time_key FROM date_time d2 "
                "WHERE d2.date_time_key BETWEEN (SELECT min(k) - 86400 FROM agg_keys) "
                "AND (SELECT max(k) + 86400 FROM agg_keys) "
                f"AND {inner} IN (SELECT b FROM agg_buckets)) GROUP BY 1, {names}"
            )
        else:
            span = {"DAY": "1 day", "MONTH": "1 month", "QUARTER": "3 months", "YEAR": "1 year"}[
                level
            ]
            source = (
                f"SELECT ab.b AS bucket, {names}, {sums} FROM agg_buckets ab "
                f"JOIN {lower} l ON l.bucket >= ab.b AND l.bucket < ab.b + "
                f"interval '{span}' GROUP BY 1, {names}"
            )
        written += (
            conn.execute(
                sa.text(f"INSERT INTO {table} (bucket, {names}, {measure_names}) {source}")
            ).rowcount
            or 0
        )
        conn.execute(sa.text("DROP TABLE agg_buckets"))
    return written


def keys_for_days(conn: Connection, start: Any, end: Any) -> None:
    """Fill ``agg_keys`` with the intervals of local days start..end (inclusive)."""
    conn.execute(
        sa.text(
            "CREATE TEMP TABLE agg_keys ON COMMIT DROP AS SELECT date_time_key "
            "AS k FROM date_time WHERE local_date BETWEEN :a AND :b"
        ),
        {"a": start, "b": end},
    )


def verify(conn: Connection, h: Hierarchy, start: Any, end: Any) -> list[dict[str, Any]]:
    """Compare each level of ``h`` over local days start..end with a direct recomputation from
    the facts. Returns one entry per table with differences."""
    names, exprs = _groups(h)
    measures = ", ".join(f"{expr} AS {name}" for name, expr in h.measures)
    measure_names = ", ".join(name for name, _ in h.measures)
    days = "d.local_date BETWEEN :a AND :b"
    details = []
    for level in LEVELS:
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
