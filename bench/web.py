"""Benchmark: the Timeline tab over a week (issue 21, item 3; target: under a second, and at
most 3 times a History page).

History: ``--days`` (7) of the default schedule's work (ETL every 30 minutes: Extract and
Transform; UpdateStats every 10 minutes; maintenance, aggregation and export daily), about
1,700 runs, with ledger rows for the firings. Measured in-process (FastAPI's TestClient, an
admin session): ``GET /timeline?start=...&days=7`` against the baseline, same run, same app: the
History page of the same week with 1,000 runs (its largest page). Alternating, ``--samples``
each; prints medians, p95 and the ratio.

Run: ./dev bench web [--days 7] [--samples 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from bench import admin_client, web_servers
from bench.metrics import HISTORY, LEDGER


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--samples", type=int, default=15)
    args = parser.parse_args()
    with web_servers() as engine:
        with engine.begin() as conn:
            conn.execute(sa.text(HISTORY), {"days": args.days, "etl": 30})
            conn.execute(sa.text(LEDGER))
            runs = conn.execute(sa.text("SELECT count(*) FROM job_run")).scalar_one()
        client = admin_client(engine)
        first = (datetime.now(UTC) - timedelta(days=args.days)).date()
        last = datetime.now(UTC).date()
        timeline = f"/timeline?start={first.isoformat()}&days={args.days}"
        history = f"/jobs/history?from={first.isoformat()}&to={last.isoformat()}&limit=1000"
        for path in (timeline, history):  # warm up
            assert client.get(path).status_code == 200
        samples: dict[str, list[float]] = {timeline: [], history: []}
        for _ in range(args.samples):
            for path, values in samples.items():
                began = time.perf_counter()
                reply = client.get(path)
                values.append(time.perf_counter() - began)
                assert reply.status_code == 200
        size = len(client.get(timeline).content)
        print(f"history: {args.days} days of the default schedule, {runs:,} runs")
        for name, path in (("Timeline, a week", timeline), ("History page, 1,000 runs", history)):
            ordered = sorted(samples[path])
            p95 = ordered[int(0.95 * (len(ordered) - 1))]
            print(
                f"{name}: median {statistics.median(ordered) * 1000:.0f} ms, p95 "
                f"{p95 * 1000:.0f} ms"
            )
        ratio = statistics.median(samples[timeline]) / statistics.median(samples[history])
        under = "met" if statistics.median(samples[timeline]) < 1 else "MISSED"
        print(
            f"Timeline page {size:,} bytes; ratio Timeline / History {ratio:.2f} "
            f"(target <= 3); under a second: {under}"
        )


if __name__ == "__main__":
    main()
