"""Benchmark: purging one expired day must not depend on its size (issue 7, SPEC D2).

Runs (median of 3) of the maintenance step that drops expired partitions: one over a day of N fact
rows, one over a day of 10 x N rows, in the same database server. Baseline, same run: a
row-by-row style ``DELETE`` of the same 10 x N day from a copy (what a non-partitioned purge
would cost). Prints both drop times, their ratio (target <= 2) and the DELETE's time.

Run: ./dev bench maintain [--rows N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from gim_tasks.db import migrate
from gim_tasks.db.engine import make_engine
from gim_tasks.db.partitions import ensure_partitions
from gim_tasks.jobs.base import JobContext
from gim_tasks.jobs.maintain import step_expired_partitions
from gim_tasks.localstack import scratch_postgres
from gim_tasks.options.values import Options

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
FILL = (
    "INSERT INTO interaction_fact (idb_id, interaction_id, start_ts, date_time_key, status) "
    "SELECT 1, g, CAST(:day AS timestamptz) + (g % 86400) * interval '1 second', 0, "
    "'completed' FROM generate_series(1, :rows) g"
)


def drop_time(url: str, rows: int, repeat: int = 3) -> float:
    """Median over ``repeat`` fills and drops."""
    return statistics.median(_drop_once(url, rows) for _ in range(repeat))


def _drop_once(url: str, rows: int) -> float:
    engine = make_engine(url)
    day = (NOW - timedelta(days=30)).date()
    with engine.begin() as conn:
        ensure_partitions(conn, "interaction_fact", [day])
        conn.execute(sa.text(FILL), {"day": f"{day} 00:00+00", "rows": rows})
        conn.execute(sa.text("CHECKPOINT"))
    options = Options.from_texts({("gim-etl", "days-to-keep-facts"): "7"})
    ctx = JobContext(mart=engine, idb_urls=[], options=options, now=lambda: NOW)
    began = time.perf_counter()
    with engine.begin() as conn:
        dropped = step_expired_partitions(ctx, conn)
    elapsed = time.perf_counter() - began
    assert dropped["dropped"], dropped
    engine.dispose()
    return elapsed


def delete_time(url: str, rows: int) -> float:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE flat (LIKE interaction_fact INCLUDING ALL)"))
        conn.execute(
            sa.text(FILL.replace("interaction_fact", "flat")),
            {"day": "2026-10-24 00:00+00", "rows": rows},
        )
    began = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM flat WHERE start_ts < '2026-10-25 00:00+00'"))
    elapsed = time.perf_counter() - began
    engine.dispose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    with scratch_postgres("gim-bench-") as server:
        urls = []
        for name in ("small", "large"):
            server.create_database(name)
            urls.append(server.url(name))
            migrate.upgrade(make_engine(urls[-1]))
        small = drop_time(urls[0], args.rows)
        large = drop_time(urls[1], args.rows * 10)
        baseline = delete_time(urls[0], args.rows * 10)
        print(f"drop one expired day of {args.rows:,} rows:      {small * 1000:8.1f} ms")
        print(f"drop one expired day of {args.rows * 10:,} rows:    {large * 1000:8.1f} ms")
        print(f"ratio large/small: {large / small:.2f}  (target <= 2)")
        print(
            f"baseline DELETE of {args.rows * 10:,} rows:         {baseline * 1000:8.1f} ms "
            f"(ratio drop/DELETE {large / baseline:.3f})"
        )


if __name__ == "__main__":
    main()
