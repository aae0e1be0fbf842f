"""Benchmark: aggregation cost against history, and re-aggregation vs transform (issue 6).

1. One incremental pass (all 13 hierarchies x 6 levels) for one new hour of facts, on top of
   1 day vs N days (``--days``, default 30; the scale target is 90) of aggregated history
   (median of seven new hours). Target: ratio <= 1.2.
   Incremental passes update MONTH by deltas (old MONTH - old DAY + new DAY), so no level
   reads more than a bounded number of rows per group (QUARTER: 3 months, YEAR: 4 quarters).
2. A full re-aggregation of one day (ALLSETS) relative to the Transform of that day, same run,
   median of three fresh marts. Target: ratio <= 1.0 (issue 40). The last line prints both
   ratios with their targets.

Run: ./dev bench aggregate [--days N] [--profile]

``--profile`` also prints where each history's passes spend their statement time, by level
and by hierarchy (what the README's figures come from when a target is missed).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import psycopg
import sqlalchemy as sa

from bench import median_per_history
from devtools.localstack import PostgresServer, scratch_postgres
from gim_tasks.aggregate.params import parse
from gim_tasks.db import migrate
from gim_tasks.db.engine import make_engine
from gim_tasks.idb.generator import generate
from gim_tasks.idb.schema import init_idb
from gim_tasks.jobs import aggregate, extract, transform
from gim_tasks.jobs.base import JobContext
from gim_tasks.options.values import Options

START = datetime(2026, 10, 1, tzinfo=UTC)
SAMPLES = 7  # new hours per history; the median is reported
ROUNDS = 3  # re-aggregations of a day (each on a fresh mart); the median is reported
# Facts kept long enough that the fixed START stays re-aggregatable whatever today is (D5).
OPTIONS = Options.from_texts(
    {("schedule", "timezone"): "Europe/Berlin", ("gim-etl", "days-to-keep-facts"): "36500"}
)


#: Statement seconds per (history days, level) and (history days, hierarchy), with --profile.
PROFILE: Counter[tuple[int, str]] = Counter()
REAGGREGATION = -1  # PROFILE's key for the re-aggregation of one day
TARGET = re.compile(
    r"(?:INSERT INTO|DELETE FROM) agg_(\w+?)_(subhour|hour|day|month|quarter|year)\b"
)


def profiled(engine: sa.Engine, days: int) -> None:
    """Add each aggregate statement's time to PROFILE, by the table it writes first."""

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["began"] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        target = TARGET.search(statement)
        if target is None:
            return
        spent = time.perf_counter() - conn.info.pop("began")
        hierarchy, level = target.groups()
        level = "DAY..YEAR (deltas)" if statement.startswith("WITH day_old") else level.upper()
        PROFILE[(days, "level " + level)] += spent
        PROFILE[(days, "hierarchy " + hierarchy.upper())] += spent

    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "after_cursor_execute", after)


def timed(body, url: str, idb: str | None = None, profile: int = 0) -> float:  # type: ignore[no-untyped-def]
    engine = make_engine(url)
    if profile:
        profiled(engine, profile)
    began = time.perf_counter()
    body(JobContext(mart=engine, idb_urls=[idb] if idb else [], options=OPTIONS))
    elapsed = time.perf_counter() - began
    engine.dispose()
    return elapsed


def once(ctx: JobContext) -> None:
    aggregate.run(ctx, once=True)


def setup(server: PostgresServer, days: int, rate: int) -> tuple[str, str]:
    server.create_database(f"idb{days}")
    server.create_database(f"mart{days}")
    idb, mart = server.url(f"idb{days}"), server.url(f"mart{days}")
    init_idb(make_engine(idb))
    migrate.upgrade(make_engine(mart))
    with psycopg.connect(idb, autocommit=True) as conn:
        generate(conn, START, days * 24, agents=100, queues=10, rate=rate, seed=days)
    timed(extract.run, mart, idb)
    timed(transform.run, mart, idb)
    timed(once, mart)
    # Steady state: the history was aggregated in one burst of passes, each rewriting the same
    # MONTH..YEAR rows; in production autovacuum (and Job_UpdateStats) reclaims those dead rows
    # as they come, so a pass meets the same few whatever the history. Vacuum once here so the
    # 30-day run does not measure the burst's leftovers.
    with psycopg.connect(mart, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return idb, mart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="days of history against 1 day")
    parser.add_argument("--profile", action="store_true", help="statement time per level")
    arguments = parser.parse_args()
    days, profile = arguments.days, arguments.profile
    with scratch_postgres("gim-bench-") as server:
        began = time.perf_counter()
        marts = {n: setup(server, n, rate=500) for n in (1, days)}
        print(f"set up 1 and {days} days of history in {time.perf_counter() - began:.0f} s")

        def new_hour(idb: str, mart: str) -> float:
            timed(extract.run, mart, idb)
            timed(transform.run, mart, idb)
            history = next(n for n, urls in marts.items() if urls == (idb, mart))
            return timed(once, mart, profile=history if profile else 0)

        results = median_per_history(
            marts, SAMPLES, START, {"agents": 100, "queues": 10, "rate": 2000}, new_hour
        )
        print("incremental aggregation pass, one new hour, 13 hierarchies x 6 levels:")
        print(f"  on 1 day of history:   {results[1]:.3f} s")
        print(f"  on {days} days of history: {results[days]:.3f} s")
        print(f"  ratio {days}d/1d: {results[days] / results[1]:.2f}  (target <= 1.2)")
        if profile:
            print(f"  statement seconds over {SAMPLES} passes: 1 day, {days} days, ratio")
            for what in sorted({key for _, key in PROFILE}):
                one, many = PROFILE[(1, what)], PROFILE[(days, what)]
                ratio = f"{many / one:.2f}" if one else "-"
                print(f"    {what:<28} {one:7.3f} {many:7.3f}  {ratio}")
        # Re-aggregation of one day vs the Transform of that day: ROUNDS fresh marts of the
        # same day, the medians.
        server.create_database("idb_day")
        idb = server.url("idb_day")
        init_idb(make_engine(idb))
        with psycopg.connect(idb, autocommit=True) as conn:
            generate(conn, START, 24, agents=200, queues=20, rate=2000, seed=7)
        transforms, reaggregations = [], []
        for n in range(ROUNDS):
            server.create_database(f"mart_day_{n}")
            mart = server.url(f"mart_day_{n}")
            migrate.upgrade(make_engine(mart))
            timed(extract.run, mart, idb)
            transforms.append(timed(transform.run, mart, idb))
            timed(once, mart)
            with make_engine(mart).begin() as conn:
                request = parse("-insertPendingAgg ALLSETS:2026-10-01:2026-10-01").as_dict()
                conn.execute(
                    sa.text("INSERT INTO agg_request (params, requested_by) VALUES (:p, 'bench')"),
                    {"p": json.dumps(request)},
                )
            # The profile adds up the statements of the first round only.
            reaggregations.append(
                timed(once, mart, profile=REAGGREGATION if profile and not n else 0)
            )
            with make_engine(mart).connect() as conn:
                refused = conn.execute(sa.text("SELECT refused FROM agg_request")).scalar_one()
            assert refused is None, refused  # a refused request would time nothing (D5)
            print(
                f"  round {n + 1}: transform {transforms[-1]:.2f} s, "
                f"re-aggregation {reaggregations[-1]:.2f} s"
            )
        transform_seconds = statistics.median(transforms)
        reagg = statistics.median(reaggregations)
        print(
            f"one day (24 h at 2000 calls/h peak), median of {ROUNDS}: transform "
            f"{transform_seconds:.2f} s, full re-aggregation (ALLSETS) {reagg:.2f} s"
        )
        if profile:
            print("  re-aggregation statement seconds:")
            for (key, what), seconds in sorted(PROFILE.items()):
                if key == REAGGREGATION:
                    print(f"    {what:<28} {seconds:7.3f}")
        print(
            f"re-aggregation of a day / its Transform: {reagg / transform_seconds:.2f} (median "
            f"of {ROUNDS}; target <= 1.0, issue 40); incremental {days}d/1d: "
            f"{results[days] / results[1]:.2f} (target <= 1.2)"
        )


if __name__ == "__main__":
    main()
