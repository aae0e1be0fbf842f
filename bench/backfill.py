"""Benchmark: a 7-day back-fill of aggregate+export against the same work done by hand (issue
35, SPEC B1).

Seven local days of facts, aggregated and exported (hourly chunks). Measured in the same run,
alternating so that machine drift hits both alike:

* **by hand**: per day, a re-aggregation of the day (an ``-insertPendingAgg`` request processed
  by one aggregation pass, M4) and a re-export of its chunks (``export_chunk`` with a new
  generation, as an item does), one after the other;
* **back-fill**: ``gim backfill create --max-parallel 1`` for the seven days and both steps, its
  items started by :func:`gim_tasks.runtime.backfills.advance` (what the beat and, as an item
  ends, its worker call) and run by the worker's code path (claim, heartbeat, fencing, end).

Ratio back-fill / by hand: target <= 1.1. Then the beat's tick (what starts an ETL cycle on
time) is timed once a second, first idle, then while a back-fill with --max-parallel 2 runs in
a second process: the ETL start lag's p99 during the back-fill vs without it.

Run: ./dev bench backfill [--hours 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from bench import percentile, servers, timed_beat
from gim_tasks.db import migrate
from gim_tasks.db.calendar import fill_range, key_of
from gim_tasks.db.engine import make_engine
from gim_tasks.idb.generator import generate
from gim_tasks.idb.schema import init_idb
from gim_tasks.jobs import aggregate, export, extract, transform
from gim_tasks.jobs import backfill as backfill_job
from gim_tasks.jobs.base import JobContext
from gim_tasks.options import store
from gim_tasks.runtime import backfills, runs
from gim_tasks.schedule.backfill import Request, chunks_of_day
from gim_tasks.settings import get_settings

TARGET = 1.1
DAYS = 7


def _days() -> list[date]:
    today = datetime.now(UTC).date()
    return [today - timedelta(days=n) for n in range(DAYS + 1, 1, -1)]


def _ctx(engine: sa.Engine, out: Path) -> JobContext:
    with engine.connect() as conn:
        options = store.load_options(conn)
    return JobContext(mart=engine, idb_urls=[], options=options, output_base=out)


def by_hand(engine: sa.Engine, out: Path) -> float:
    """Seven re-aggregations and re-exports, one after the other, as an operator would."""
    began = time.perf_counter()
    for day in _days():
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO agg_request (params, requested_by) VALUES (CAST(:p AS jsonb), "
                    "'bench')"
                ),
                {"p": f'{{"hierarchies": {_all()}, "level": "SUBHOUR", "flavor": null, '
                 f'"start": "{day}", "end": "{day}"}}'},
            )  # fmt: skip
        aggregate.run(_ctx(engine, out), once=True)
        ctx = _ctx(engine, out)
        base = export.output_directory(ctx)
        with engine.connect() as conn:
            mark = conn.execute(sa.text("SELECT exported_through FROM export_mark")).scalar()
        for start, end in chunks_of_day(day, "UTC", 3600, mark):
            export.export_chunk(
                ctx, base, start, end, export.FACT_EXPORTS, generation={"generation": 0}
            )
    return time.perf_counter() - began


def _all() -> str:
    import json

    from gim_tasks.aggregate.registry import HIERARCHIES

    return json.dumps([h.name for h in HIERARCHIES])


class _App:
    """Where items are sent: this bench runs them itself, in order (no broker needed to time
    the work; the worker's code path below is the real one)."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    def send_task(self, name: str, kwargs: dict[str, Any], queue: str) -> None:
        self.sent.append(int(kwargs["run_id"]))


def with_backfill(engine: sa.Engine, out: Path, parallel: int = 1) -> float:
    """A back-fill of the seven days, both steps, run to its end."""
    app = _App()
    began = time.perf_counter()
    created = backfills.create(
        engine,
        Request(
            _days()[0], _days()[-1], ("aggregate", "export"), "all", "oldest", parallel, "bench"
        ),
        "bench",  # fmt: skip
    )
    backfills.advance(engine, app, datetime.now(UTC))
    while app.sent:
        run_id = app.sent.pop(0)
        token = runs.claim(engine, run_id, None)
        assert token is not None
        state, _, error = runs.run_claimed(engine, run_id, token, backfill_job.run, [],
                                           output_base=out)  # fmt: skip
        assert state == "Completed", (state, error)
        backfills.advance(engine, app, datetime.now(UTC))  # as the worker does
    seconds = time.perf_counter() - began
    assert backfills.show(engine, int(created["id"]))["state"] == "done"
    return seconds


def _setup(url: str, idb: str, out: Path, hours: int) -> sa.Engine:
    engine = make_engine(url)
    migrate.upgrade(engine)
    init_idb(make_engine(idb))
    days = _days()
    with psycopg.connect(idb, autocommit=True) as conn:
        for number, day in enumerate(days):
            start = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=8)
            generate(conn, start, hours, agents=60, queues=8, rate=3000, seed=40 + number)
    with engine.begin() as conn:
        fill_range(conn, "UTC", key_of(datetime.now(UTC) - timedelta(days=12)),
                   key_of(datetime.now(UTC)))  # fmt: skip
    for section, name, value in (
        ("gim-export", "output-directory", str(out / "export")),
        ("gim-export", "start-date", days[0].isoformat()),
        ("gim-export", "chunk-size-seconds", "3600"),
        ("quality", "discard-ratio", "off"),
        ("quality", "hour-rows", "off"),
        ("quality", "manifest-rows", "off"),
        ("schedule", "run-aggregates", "false"),
    ):
        store.set_option(engine, section, name, value, "bench")
    ctx = _ctx(engine, out)
    for body in (extract.run, transform.run):
        body(JobContext(mart=engine, idb_urls=[idb], options=ctx.options))
    aggregate.run(_ctx(engine, out), once=True)
    export.run(_ctx(engine, out))
    return engine


class _NoItems:
    """The timed beat leaves the items to the back-fill's own process (which runs them):
    items it started would go to a broker no worker of this bench reads."""

    @staticmethod
    def advance(*args: Any) -> list[int]:
        return []


def _tick_lag(engine: sa.Engine, seconds: float) -> list[float]:
    from gim_tasks.runtime import beat as beat_module

    beat_module.backfills = _NoItems  # type: ignore[assignment]
    beat = timed_beat(engine, ledger=True)
    lags = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        began = time.perf_counter()
        beat.gim_tick(datetime.now(UTC))
        lags.append((time.perf_counter() - began) * 1000)
        time.sleep(max(0.0, 1.0 - (time.perf_counter() - began)))
    return lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=6, help="hours of traffic per day")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # the back-fill beside the timed ticks, in its own process
        url, out = args.child.split("|")
        with_backfill(make_engine(url), Path(out), parallel=2)
        return
    with servers() as (base, pg, rd):
        url, idb = pg.url("gim"), pg.url("idb")
        pg.create_database("idb")
        os.environ.update({"GIM_DATABASE_URL": url, "GIM_REDIS_URL": rd.url(0)})
        get_settings.cache_clear()
        out = base / "out"
        engine = _setup(url, idb, out, args.hours)
        hand, filled = [], []
        for _ in range(args.rounds):
            hand.append(by_hand(engine, out))
            filled.append(with_backfill(engine, out))
        idle = _tick_lag(engine, 20)
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.backfill", "--child", f"{url}|{out}"],
            env={**os.environ},
        )
        busy = _tick_lag(engine, 20)
        child.wait(600)
    ratio = statistics.median(filled) / statistics.median(hand)
    print(f"by hand (7 re-aggregations + re-exports): {[round(s, 2) for s in hand]} s")
    print(f"back-fill, --max-parallel 1:             {[round(s, 2) for s in filled]} s")
    print(
        f"beat tick p50/p99 idle {statistics.median(idle):.1f}/{percentile(idle, 0.99):.1f} ms, "
        f"during a back-fill {statistics.median(busy):.1f}/{percentile(busy, 0.99):.1f} ms: "
        f"ETL start lag p99 ratio {percentile(busy, 0.99) / percentile(idle, 0.99):.2f}"
    )
    print(f"back-fill / by hand (median of {args.rounds}): {ratio:.2f} (target <= {TARGET})")


if __name__ == "__main__":
    main()
