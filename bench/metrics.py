"""Benchmark: a Prometheus scrape of ``GET /metrics`` over 90 days of history (issue 20,
item 5; target: under 200 ms).

History: ``--days`` (90) of the scheduler's work with ETL every ``--etl-minutes`` (5, heavier
than the default 30): an Extract and a Transform run per cycle, UpdateStats every 10 minutes,
a daily maintenance, aggregation and export, a few failures; the ledger's firing rows with
their verdicts; a few incidents. Written with ``generate_series`` straight into the tables.

Baseline, same run, same app: ``GET /api/runs`` (the first History page of 50 runs). Prints
the median and p95 of each over ``--samples`` requests (in-process, FastAPI's TestClient,
with a viewer token) and the ratio scrape / History page.

Run: ./dev bench metrics [--days 90] [--etl-minutes 5] [--samples 40]
"""

from __future__ import annotations

import argparse
import statistics
import time

import sqlalchemy as sa

from bench import web_servers
from gim_tasks.settings import get_settings

HISTORY = """
WITH cycles AS (
    SELECT g AS planned FROM generate_series(
        now() - make_interval(days => :days), now() - interval '10 minutes',
        make_interval(mins => :etl)) AS g
), stats AS (
    SELECT g AS planned FROM generate_series(
        now() - make_interval(days => :days), now() - interval '10 minutes',
        interval '10 minutes') AS g
), daily AS (
    SELECT g AS planned FROM generate_series(
        now() - make_interval(days => :days), now() - interval '1 day', interval '1 day') AS g
), runs AS (
    SELECT 'Job_ExtractICON' AS job, planned, planned + interval '2 seconds' AS started,
           planned + interval '40 seconds' AS ended,
           CASE WHEN random() < 0.01 THEN 'Failed' ELSE 'Completed' END AS state FROM cycles
    UNION ALL
    SELECT 'Job_TransformGIM', planned, planned + interval '41 seconds',
           planned + interval '90 seconds', 'Completed' FROM cycles
    UNION ALL
    SELECT 'Job_UpdateStats', planned, planned + interval '1 second',
           planned + interval '20 seconds', 'Completed' FROM stats
    UNION ALL
    SELECT job, planned, planned + interval '1 second', planned + interval '30 minutes',
           'Completed'
    FROM daily CROSS JOIN (VALUES ('Job_MaintainGIM'), ('Job_AggregateGIM'),
                                  ('Job_ExportGIM')) AS j(job)
)
INSERT INTO job_run (job, trigger, actor, state, firing_id, planned_at, created_at,
                     dispatched_at, started_at, ended_at, rows_read, rows_written)
SELECT job, 'scheduled', 'scheduler', state, job || ':' || planned, planned, planned, planned,
       started, ended, 1000, 1000
FROM runs
"""
LEDGER = """
INSERT INTO firing (firing_id, stream, job, planned_at, verdict, decided_at, lag_seconds,
                    reason, run_id)
SELECT firing_id, CASE job WHEN 'Job_ExtractICON' THEN 'etl' WHEN 'Job_UpdateStats'
       THEN 'statistics' WHEN 'Job_MaintainGIM' THEN 'maintenance' WHEN 'Job_ExportGIM'
       THEN 'export' ELSE 'window-open' END, job, planned_at,
       CASE WHEN random() < 0.01 THEN 'late' ELSE 'on-time' END, started_at,
       extract(epoch FROM started_at - planned_at), 'bench', id
FROM job_run WHERE job <> 'Job_TransformGIM'
"""
INCIDENTS = """
INSERT INTO incident (job, condition, detail, opened_at, resolved_at)
SELECT 'Job_ExtractICON', 'failure', 'bench', g, g + interval '1 hour'
FROM generate_series(now() - make_interval(days => :days), now() - interval '2 days',
                     interval '1 day') AS g
"""


def timed(call: object, samples: int) -> list[float]:
    values = []
    for _ in range(samples):
        began = time.perf_counter()
        reply = call()  # type: ignore[operator]
        values.append(time.perf_counter() - began)
        assert reply.status_code == 200, reply.text[:300]
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--etl-minutes", type=int, default=5)
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    with web_servers() as engine:
        began = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(sa.text(HISTORY), {"days": args.days, "etl": args.etl_minutes})
            conn.execute(sa.text(LEDGER))
            conn.execute(sa.text(INCIDENTS), {"days": args.days})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
            runs, firings = conn.execute(
                sa.text("SELECT (SELECT count(*) FROM job_run), (SELECT count(*) FROM firing)")
            ).one()
        print(
            f"history: {args.days} days, ETL every {args.etl_minutes} min: {runs:,} runs, "
            f"{firings:,} ledger rows (written in {time.perf_counter() - began:.1f} s)"
        )
        from fastapi.testclient import TestClient

        from gim_tasks.web import auth
        from gim_tasks.web.app import create_app

        settings = get_settings()
        auth.add_user(engine, "prometheus", "viewer", "bench-password-0", "bench")
        token = auth.create_token(engine, "prometheus", actor="bench")
        client = TestClient(create_app(settings, engine), base_url="http://testserver")
        client.headers["Authorization"] = f"Bearer {token}"
        for _ in range(3):  # warm up: connections, templates, plans
            client.get("/metrics")
            client.get("/api/runs")
        # Alternate, so that machine drift hits both alike.
        scrape, history = [], []
        for _ in range(args.samples):
            scrape += timed(lambda: client.get("/metrics"), 1)
            history += timed(lambda: client.get("/api/runs", params={"limit": 50}), 1)
        size = len(client.get("/metrics").content)

        def line(name: str, values: list[float]) -> str:
            ordered = sorted(values)
            p95 = ordered[int(0.95 * (len(ordered) - 1))]
            return (
                f"{name}: median {statistics.median(values) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"
            )

        print(line("GET /metrics", scrape) + f" ({size:,} bytes)")
        print(line("GET /api/runs (History, 50 runs; baseline)", history))
        ratio = statistics.median(scrape) / statistics.median(history)
        verdict = "met" if statistics.median(scrape) < 0.2 else "MISSED"
        print(f"ratio scrape / History page: {ratio:.2f}; target < 200 ms: {verdict}")


if __name__ == "__main__":
    main()
