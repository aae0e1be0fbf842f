"""Benchmark: scheduling latency and beat cost (issue 9).

1. Latency from a firing's planned instant to the task body starting (``started_at -
   planned_at``), with one beat and 4 worker processes, over ``--minutes`` of ETL and
   UpdateStats firings every minute. Target: p99 < 1 s.
2. Manual path: ``gim run`` admission to body start, 20 runs.
3. Beat tick cost, in this process against the same servers: wall and CPU time of one tick with
   nothing due (sweep, stops, options, state, decide, carry out), and Redis round trips per tick.
   Baseline, same run: one ``SELECT 1`` round trip to PostgreSQL (the floor of any tick that
   reads the database).
4. The firing ledger's cost (issue 20; target: a tick within 1.2x of one without): the beat's
   own ``gim_tick`` with the ledger and without (``GimScheduler.LEDGER``), alternating, with
   nothing due; and the time to plan 26 hours ahead (at start and on an option change) for the
   default schedule and for ETL and UpdateStats every minute.

Runs its own PostgreSQL and Redis on free ports; stops them at the end.
Run: ./dev bench runtime [--minutes N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

from bench import percentile, servers, timed_beat
from devtools.processes import ProcessGroup
from gim_tasks.db import migrate
from gim_tasks.db.engine import make_engine
from gim_tasks.options import store
from gim_tasks.options.check import check_options
from gim_tasks.options.values import schedule_from_ini
from gim_tasks.runtime.beat import carry_out
from gim_tasks.runtime.health import CachedServerCheck, server_findings
from gim_tasks.runtime.runs import overdue_stops, sweep_abandoned_waits, sweep_lost
from gim_tasks.runtime.state import load_state
from gim_tasks.schedule.engine import decide
from gim_tasks.settings import get_settings

BIN = Path(sys.executable).parent


class CountingRedis(redis.Redis):
    calls = 0

    def execute_command(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        CountingRedis.calls += 1
        return super().execute_command(*args, **kwargs)


def tick_cost(
    url: str, redis_url: str, ticks: int = 300, check: str = "cached"
) -> tuple[float, float, float, float]:
    """Median wall and CPU time of a tick with nothing due. ``check`` is how C2 is read:
    ``cached`` as the beat does (option rules every tick, server items from a cache refreshed
    in the background at most every 30 s), ``options`` the option rules only (the beat before
    C2 covered the server items), ``uncached`` every item on every tick."""
    engine = make_engine(url)
    client = CountingRedis.from_url(redis_url)
    walls, cpus = [], []
    CountingRedis.calls = 0
    server_check = CachedServerCheck(get_settings())
    with engine.connect() as conn:
        server_check.report(store.load_options(conn))  # the first call waits for a result
    for _ in range(ticks):
        wall, cpu = time.perf_counter(), time.process_time()
        sweep_lost(engine)
        sweep_abandoned_waits(engine)
        overdue_stops(engine)
        with engine.connect() as conn:
            options = store.load_options(conn)
            raw = client.hgetall("gim:cursors")
            cursors = {k.decode(): datetime.fromisoformat(v.decode()) for k, v in raw.items()}
            state = load_state(conn, cursors)
        if check == "cached":
            refusal = server_check.report(options).refusal
        elif check == "options":
            refusal = check_options(options).refusal
        else:
            refusal = (
                check_options(options).merged(server_findings(options, get_settings())).refusal
            )
        tick = decide(options.schedule(), datetime.now(UTC), state, refusal)
        carry_out(engine, None, tick.__class__((), tick.cursors, tick.next_runs))
        client.pexpire("redbeat::lock", 5000)  # what RedBeat's own tick does: extend its lock
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    round_trips = CountingRedis.calls / ticks
    base = []
    with engine.connect() as conn:
        for _ in range(ticks):
            began = time.perf_counter()
            conn.execute(sa.text("SELECT 1"))
            base.append(time.perf_counter() - began)
    engine.dispose()
    return statistics.median(walls), statistics.median(cpus), round_trips, statistics.median(base)


def add_holds(url: str) -> None:
    """Issue 34's load: 10 blackout windows and 3 paused jobs (none due now)."""
    from gim_tasks.runtime import holds
    from gim_tasks.schedule.holds import Blackout

    engine = make_engine(url)
    for number in range(10):
        window = Blackout(f"w{number}", "once", "bench", starts="2099-01-01T00:00",
                          ends="2099-01-02T00:00")  # fmt: skip
        holds.add_blackout(engine, window, "bench")
    for job in ("Job_MaintainGIM", "Job_UpdateStats", "Job_ExportGIM"):
        holds.pause(engine, job, "bench", "bench")
    engine.dispose()


def report_tick_cost(url: str, redis_url: str) -> None:
    plain = tick_cost(url, redis_url, 300, "cached")[0]
    add_holds(url)
    held = tick_cost(url, redis_url, 300, "cached")[0]
    print(
        f"beat tick, nothing due, with 10 blackout windows and 3 paused jobs: wall "
        f"{held * 1000:.2f} ms vs {plain * 1000:.2f} ms without (ratio {held / plain:.2f}, "
        "target 1.2)"
    )
    for check, what in (
        ("cached", "C2 as the beat reads it (server items cached, 30 s)"),
        ("options", "option rules only (before C2 covered server items)"),
        ("uncached", "every C2 item on every tick (what the cache avoids)"),
    ):
        wall, cpu, trips, floor = tick_cost(
            url, redis_url, 60 if check == "uncached" else 300, check
        )
        print(
            f"beat tick, nothing due, {what}: wall {wall * 1000:.2f} ms, CPU "
            f"{cpu * 1000:.2f} ms, Redis round trips {trips:.1f}; baseline SELECT 1: "
            f"{floor * 1000:.3f} ms (ratio {wall / floor:.1f})"
        )
    settings = get_settings()
    engine = make_engine(url)
    with engine.connect() as conn:
        options = store.load_options(conn)
    engine.dispose()
    began = time.perf_counter()
    findings = server_findings(options, settings)
    print(
        f"  C2 server items (in the beat's background thread, at most every 30 s): "
        f"{(time.perf_counter() - began) * 1000:.1f} ms, {len(findings)} finding(s)"
    )


def ledger_tick(engine: sa.Engine, ticks: int) -> tuple[float, float, float, float]:
    """Median and p99 wall time of the beat's ``gim_tick`` with the ledger and without, the
    two alternating tick by tick (so machine drift hits both alike)."""
    beats = {ledger: timed_beat(engine, ledger) for ledger in (True, False)}
    samples: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(ticks):
        for ledger, beat in beats.items():
            began = time.perf_counter()
            beat.gim_tick(datetime.now(UTC))
            samples[ledger].append(time.perf_counter() - began)
    return (
        statistics.median(samples[True]),
        percentile(samples[True], 0.99),
        statistics.median(samples[False]),
        percentile(samples[False], 0.99),
    )


def report_ledger_cost(engine: sa.Engine) -> None:
    from gim_tasks.monitor import ledger

    with_median, with_p99, without_median, without_p99 = ledger_tick(engine, 300)
    print(
        f"beat tick (gim_tick, nothing due) with the ledger: median {with_median * 1000:.2f} ms, "
        f"p99 {with_p99 * 1000:.2f} ms; without: median {without_median * 1000:.2f} ms, "
        f"p99 {without_p99 * 1000:.2f} ms; ratio {with_median / without_median:.2f} "
        "(target <= 1.2)"
    )
    with engine.connect() as conn:
        options = store.load_options(conn).schedule()
    every_minute = schedule_from_ini(
        "[schedule]\netl-start-time = 00:00\netl-end-time = 00:00\netl-frequency = 1\n"
        "update-stats-schedule = * *\n"
    )
    for name, schedule in (
        ("default schedule", options),
        ("ETL and UpdateStats every minute", every_minute),
    ):
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM firing"))
        horizon = ledger.Horizon()
        now = datetime.now(UTC)
        began = time.perf_counter()
        with engine.begin() as conn:
            ledger.keep_planned(conn, horizon, schedule, now)
        seconds = time.perf_counter() - began
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*) FROM firing")).scalar_one()
        print(
            f"  planning 26 h ahead, {name}: {rows:,} firings in {seconds * 1000:.0f} ms "
            "(at the beat's start and on an option change; extending: every ~2 h, a few rows)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument(
        "--tick-only", action="store_true", help="Only the beat tick cost (no processes)."
    )
    args = parser.parse_args()
    groups: list[ProcessGroup] = []  # the worker and the beat, on the shared harness
    with servers() as (base, pg, rd):
        try:
            run(args, base, pg, rd, groups)
        finally:
            for group in groups:
                group.stop_all(grace=0)


def run(
    args: argparse.Namespace,
    base: Path,
    pg: Any,
    rd: Any,
    groups: list[ProcessGroup],
) -> None:
    url = pg.url("gim")
    migrate.upgrade(make_engine(url))
    for name in ("idb",):
        pg.create_database(name)
    env = {
        **os.environ,
        "GIM_DATABASE_URL": url,
        "GIM_REDIS_URL": rd.url(0),
        "GIM_IDB_URLS": pg.url("idb"),
        "GIM_LOG_LEVEL": "WARNING",
    }
    subprocess.run([str(BIN / "gim"), "idb", "init"], env=env, check=True, capture_output=True)
    os.environ.update({k: v for k, v in env.items() if k.startswith("GIM_")})
    get_settings.cache_clear()
    engine = make_engine(url)
    if args.tick_only:
        report_tick_cost(url, rd.url(0))
        report_ledger_cost(engine)
        return
    for option, value in (
        ("etl-start-time", "00:00"),
        ("etl-end-time", "00:00"),
        ("etl-frequency", "1"),
        ("update-stats-schedule", "* *"),
        ("run-maintain", "false"),
    ):
        store.set_option(engine, "schedule", option, value, "bench")
    group = ProcessGroup(env, log_dir=base, grace=30.0)
    groups.append(group)
    group.start("worker", [str(BIN / "gim"), "worker", "--concurrency", "4"])
    group.start("beat", [str(BIN / "gim"), "beat"])
    time.sleep(args.minutes * 60)
    with engine.connect() as conn:
        scheduled = [
            row[0]
            for row in conn.execute(
                sa.text(
                    "SELECT extract(epoch FROM started_at - planned_at) FROM job_run "
                    "WHERE trigger = 'scheduled' AND started_at IS NOT NULL "
                    "AND planned_at IS NOT NULL "
                    "AND job IN ('Job_ExtractICON', 'Job_UpdateStats') AND planned_at > "
                    "(SELECT min(created_at) FROM job_run) + interval '5 seconds'"
                )
            )
        ]
    store.set_option(engine, "schedule", "run-scheduler", "false", "bench")
    manual = []
    for _ in range(20):
        done = subprocess.run(
            [str(BIN / "gim"), "run", "Job_UpdateStats", "--force", "--wait"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    with engine.connect() as conn:
        manual = [
            row[0]
            for row in conn.execute(
                sa.text(
                    "SELECT extract(epoch FROM started_at - created_at) FROM job_run WHERE forced"
                )
            )
        ]
    print(
        f"scheduled firings: {len(scheduled)} (ETL and UpdateStats every minute, "
        "1 beat, 4 worker processes)"
    )
    if scheduled:
        print(
            f"  planned instant -> body start: p50 {percentile(scheduled, 0.5):.3f} s, "
            f"p99 {percentile(scheduled, 0.99):.3f} s, max {max(scheduled):.3f} s "
            "(target p99 < 1 s)"
        )
    print(
        f"manual runs: {len(manual)}: admission -> body start p50 "
        f"{percentile(manual, 0.5):.3f} s, p99 {percentile(manual, 0.99):.3f} s"
    )
    group.stop_all()
    groups.clear()
    report_tick_cost(url, rd.url(0))


if __name__ == "__main__":
    main()
