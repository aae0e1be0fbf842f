"""Benchmark: the Days grid (issue 37, Q2; target: 90 days under a second, and within 3 times
the first History page).

History: ``--days`` (90) of the default schedule's runs and ledger (bench/metrics.py's
HISTORY), facts on every day of the period (one row per 15-minute interval of
interaction_fact), a thousand 15-minute intervals queued for aggregation, every aggregate
table created. Measured in-process (FastAPI's TestClient, an admin session): ``GET
/days?days=90`` against the baseline, same run, same app: the first History page
(``/jobs/history``, 25 runs). Alternating, ``--samples`` each; prints medians and the ratio;
the last line is the headline ratio with its target.

Run: ./dev bench days [--days 90] [--samples 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import sqlalchemy as sa

from bench import admin_client, web_servers
from bench.metrics import HISTORY, LEDGER

FACTS = """
INSERT INTO interaction_fact (idb_id, interaction_id, start_ts, date_time_key)
SELECT 1, n, t, (extract(epoch FROM t)::bigint / 900) * 900
FROM generate_series(now() - make_interval(days => :days), now(), interval '15 minutes')
     WITH ORDINALITY AS g(t, n)
"""
PENDING = """
INSERT INTO agg_pending (fact, date_time_key)
SELECT 'interaction_fact', (extract(epoch FROM t)::bigint / 900) * 900
FROM generate_series(now() - make_interval(days => :days), now(), interval '15 minutes') AS t
ORDER BY random() LIMIT 1000 ON CONFLICT DO NOTHING
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--samples", type=int, default=15)
    args = parser.parse_args()
    with web_servers() as engine:
        from datetime import UTC, datetime, timedelta

        from gim_tasks.aggregate.compute import ensure_tables
        from gim_tasks.db.partitions import ensure_partitions

        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(sa.text(HISTORY), {"days": args.days, "etl": 30})
            conn.execute(sa.text(LEDGER))
            ensure_tables(conn)
            days = [(now - timedelta(days=n)).date() for n in range(args.days + 2)]
            ensure_partitions(conn, "interaction_fact", days)
            conn.execute(sa.text(FACTS), {"days": args.days})
            conn.execute(sa.text(PENDING), {"days": args.days})
            runs = conn.execute(sa.text("SELECT count(*) FROM job_run")).scalar_one()
        client = admin_client(engine)
        grid, history = f"/days?days={args.days}", "/jobs/history"
        for path in (grid, history):  # warm up
            assert client.get(path).status_code == 200
        samples: dict[str, list[float]] = {grid: [], history: []}
        for _ in range(args.samples):
            for path, values in samples.items():
                began = time.perf_counter()
                reply = client.get(path)
                values.append(time.perf_counter() - began)
                assert reply.status_code == 200
        print(
            f"history: {args.days} days, {runs:,} runs, facts on every day, 1,000 intervals queued"
        )
        for name, path in ((f"Days, {args.days} days", grid), ("History, first page", history)):
            print(f"{name}: median {statistics.median(samples[path]) * 1000:.0f} ms")
        median = statistics.median(samples[grid])
        ratio = median / statistics.median(samples[history])
        under = "met" if median < 1 else "MISSED"
        print(f"ratio Days / History {ratio:.2f} (target <= 3); under a second: {under}")


if __name__ == "__main__":
    main()
