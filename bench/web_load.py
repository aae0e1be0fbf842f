"""Benchmark: the web app and the API under load, with the beat ticking beside (issue 40, item 3).

A throw-away PostgreSQL and Redis, ``--days`` (90) of the scheduler's history (bench/metrics.py:
ETL every 5 minutes, statistics, maintenance, export, the ledger), 10 operator accounts and a
viewer token; the web app as a real process (``gim web``, ``--web-workers``) on a loopback port.
Load: Locust, headless, bounded in users and time (``--users`` 50 operators for ``--minutes``
5, bench/locustfile.py: the Scheduled and History pages, ``/api/runs`` with filters,
``/api/timeline``, logins now and then, and a scraper reading ``/metrics`` every 15 s).

The beat's tick (``gim_tick``, the beat's own work each second) runs in this process once a
second throughout: first ``--idle-seconds`` with no load (the baseline, same run), then during
the load. Prints per route: requests, failures, p50/p95/p99 (ms); the tick's p50/p99 idle and
under load; the last line is the headline with its targets: 0 errors, p99 < 500 ms on every
route but the login (argon2: its cost is its own line), tick p99 under load <= 1.2 x idle.

Run: ./dev bench web-load [--users 50] [--minutes 5] [--days 90] [--web-workers 1]
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from bench import percentile, servers, timed_beat
from bench.metrics import HISTORY, LEDGER

BIN = Path(sys.executable).parent
PASSWORD = "bench-password-0"
ACCOUNTS = 10
#: Routes judged against the 500 ms p99 target (the login is reported, not judged).
LOGIN = ("POST /login",)


class Ticker(threading.Thread):
    """The beat's tick, once a second, timed; ``phase`` says which sample list it feeds."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(daemon=True)
        self.beat = timed_beat(engine)
        self.samples: dict[str, list[float]] = {"idle": [], "load": []}
        self.phase = "idle"
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            began = time.perf_counter()
            self.beat.gim_tick(datetime.now(UTC))
            took = time.perf_counter() - began
            self.samples[self.phase].append(took)
            self.done.wait(max(0.0, 1.0 - took))


def _wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the web app did not answer at {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--idle-seconds", type=int, default=60)
    parser.add_argument("--web-workers", type=int, default=1)
    parser.add_argument("--spawn-rate", type=float, default=5)
    args = parser.parse_args()
    from devtools.localstack import free_port
    from gim_tasks.db import migrate
    from gim_tasks.db.engine import make_engine
    from gim_tasks.settings import get_settings
    from gim_tasks.web import auth

    with servers() as (base, pg, rd):
        url = pg.url("gim")
        engine = make_engine(url)
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(sa.text(HISTORY), {"days": args.days, "etl": 5})
            conn.execute(sa.text(LEDGER))
            runs = conn.execute(sa.text("SELECT count(*) FROM job_run")).scalar_one()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
        env = {
            "GIM_DATABASE_URL": url,
            "GIM_REDIS_URL": rd.url(0),
            "GIM_WEB_SECRET": secrets.token_urlsafe(48),
            "GIM_LOG_LEVEL": "WARNING",
        }
        os.environ.update(env)
        get_settings.cache_clear()
        for n in range(ACCOUNTS):
            auth.add_user(engine, f"op{n}", "operator", PASSWORD, "bench")
        auth.add_user(engine, "prometheus", "viewer", PASSWORD, "bench")
        token = auth.create_token(engine, "prometheus", actor="bench")
        port = free_port()
        host = f"http://127.0.0.1:{port}"
        web = subprocess.Popen(
            [str(BIN / "gim"), "web", "--port", str(port), "--workers", str(args.web_workers)],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ticker = Ticker(engine)
        try:
            _wait_for(f"{host}/login")
            ticker.start()
            time.sleep(args.idle_seconds)
            ticker.phase = "load"
            prefix = base / "locust"
            locust = subprocess.run(
                [
                    str(BIN / "locust"),
                    "-f",
                    str(Path(__file__).with_name("locustfile.py")),
                    "--headless",
                    "--users",
                    str(args.users + 1),  # the operators and the scraper
                    "--spawn-rate",
                    str(args.spawn_rate),
                    "--run-time",
                    f"{int(args.minutes * 60)}s",
                    "--host",
                    host,
                    "--csv",
                    str(prefix),
                    "--only-summary",
                    "--loglevel",
                    "WARNING",
                ],
                env={
                    **os.environ,
                    "GIM_BENCH_PASSWORD": PASSWORD,
                    "GIM_BENCH_TOKEN": token,
                    "GIM_BENCH_ACCOUNTS": str(ACCOUNTS),
                },
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            ticker.done.set()
            web.terminate()
            web.wait(timeout=30)
        ticker.join(timeout=30)
        stats = prefix.with_name("locust_stats.csv")
        if not stats.exists():
            raise SystemExit(f"locust wrote no statistics:\n{locust.stdout}\n{locust.stderr}")
        report(stats, ticker, args, runs)


def report(stats: Path, ticker: Ticker, args: argparse.Namespace, runs: int) -> None:
    with stats.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["Name"] != "Aggregated"]
    print(
        f"history: {args.days} days, {runs:,} runs; load: {args.users} operators and a scraper, "
        f"{args.minutes:g} min, {args.web_workers} web worker(s); 2-core box"
    )
    print(f"{'route':<28} {'requests':>8} {'errors':>6} {'p50':>6} {'p95':>6} {'p99':>6}  ms")
    errors = 0
    worst = ("", 0.0)
    for row in sorted(rows, key=lambda r: r["Name"]):
        failures = int(row["Failure Count"])
        errors += failures
        p99 = float(row["99%"])
        if row["Name"] not in LOGIN and p99 > worst[1]:
            worst = (row["Name"], p99)
        print(
            f"{row['Name']:<28} {int(row['Request Count']):>8} {failures:>6} "
            f"{float(row['50%']):>6.0f} {float(row['95%']):>6.0f} {p99:>6.0f}"
        )
    failures = stats.with_name("locust_failures.csv")
    if failures.exists():
        with failures.open() as handle:
            for row in csv.DictReader(handle):
                print(f"  error x{row['Occurrences']}: {row['Name']}: {row['Error'][:160]}")
    idle, load = ticker.samples["idle"], ticker.samples["load"]
    idle_p99, load_p99 = percentile(idle, 0.99) * 1000, percentile(load, 0.99) * 1000
    print(
        f"beat tick: idle p50 {statistics.median(idle) * 1000:.1f} ms p99 {idle_p99:.1f} ms "
        f"({len(idle)} ticks); under load p50 {statistics.median(load) * 1000:.1f} ms "
        f"p99 {load_p99:.1f} ms ({len(load)} ticks)"
    )
    ratio = load_p99 / idle_p99 if idle_p99 else float("inf")
    print(
        f"errors {errors} (target 0); worst p99 {worst[1]:.0f} ms on {worst[0]} (target < 500); "
        f"tick p99 load / idle {ratio:.2f} (target <= 1.2)"
    )


if __name__ == "__main__":
    main()
