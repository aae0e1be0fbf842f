"""Benchmark: the cost of one scheduler tick (``decide`` for all jobs), issue 4.

Baseline, measured in the same run: what a plain croniter-based beat does per tick for the
same schedules — ``croniter(expr, now).get_next()`` for each cron stream (update stats,
export, maintenance, aggregation) — which is less than our tick decides (no ETL grid, no
state, no S10). Prints microseconds per tick and the ratio ours / baseline.

Run: ./dev bench schedule [--ticks N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

from croniter import croniter

from gim_tasks.options.values import schedule_from_ini
from gim_tasks.schedule.engine import decide
from gim_tasks.schedule.jobs import AGGREGATE, EXPORT, EXTRACT, MAINTAIN, UPDATE_STATS
from gim_tasks.schedule.state import ActiveRun, SchedulerState

OPTIONS = schedule_from_ini("""
[schedule]
timezone = Europe/Berlin
run-aggregates = true
run-export = true
""")


def ours(ticks: int) -> list[float]:
    """Ticks one second apart from 10:00:01 local, beat state as in production: a cycle
    running, aggregation running, cursors at the last firings."""
    start = datetime(2026, 11, 23, 9, 0, 1, tzinfo=UTC)
    cursors = {
        EXTRACT: datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
        UPDATE_STATS: datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
        MAINTAIN: datetime(2026, 11, 23, 2, 0, tzinfo=UTC),
        EXPORT: datetime(2026, 11, 23, 7, 20, tzinfo=UTC),
        AGGREGATE: datetime(2026, 11, 23, 3, 0, tzinfo=UTC),
    }
    state = SchedulerState(
        running=(ActiveRun(1, EXTRACT, "scheduled"), ActiveRun(2, AGGREGATE, "scheduled")),
        cursors=cursors,
    )
    samples = []
    for second in range(ticks):
        now = start + timedelta(seconds=second)
        began = time.perf_counter()
        tick = decide(OPTIONS, now, state)
        samples.append(time.perf_counter() - began)
        if tick.actions:  # carry the cursors forward as the beat does
            state = SchedulerState(running=state.running, cursors=tick.cursors)
    return samples


def baseline(ticks: int) -> list[float]:
    start = datetime(2026, 11, 23, 9, 0, 1, tzinfo=UTC)
    expressions = ["*/10 * * * *", "20 0,8,16 * * *", "0 3 * * *", "0 4 * * *"]
    samples = []
    for second in range(ticks):
        now = start + timedelta(seconds=second)
        began = time.perf_counter()
        for expression in expressions:
            croniter(expression, now).get_next(datetime)
        samples.append(time.perf_counter() - began)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=20000)
    args = parser.parse_args()
    ours(200), baseline(200)  # warm up imports and caches
    mine, base = ours(args.ticks), baseline(args.ticks)
    mine_us = statistics.median(mine) * 1e6
    base_us = statistics.median(base) * 1e6
    p99 = sorted(mine)[int(len(mine) * 0.99)] * 1e6
    print(f"ticks: {args.ticks} (one per second of schedule time)")
    print(f"gim-tasks decide(), all jobs: median {mine_us:8.2f} us/tick   p99 {p99:8.2f} us")
    print(f"baseline croniter x4:         median {base_us:8.2f} us/tick")
    print(f"ratio ours/baseline: {mine_us / base_us:.2f}   target: well under 1000 us per tick")


if __name__ == "__main__":
    main()
