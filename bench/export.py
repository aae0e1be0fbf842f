"""Benchmark: export throughput and memory (issue 8).

N fact rows (default 5,000,000) in ``interaction_segment_fact``, exported by Job_ExportGIM in
daily chunks, against a baseline measured in the same run: one
``COPY (SELECT … same rows …) TO STDOUT`` written to a file by the same client library.
Prints rows per second of both, the ratio (target >= 0.8) and the peak RSS of this process.

Run: ./dev bench export [--rows N]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from datetime import UTC, datetime, timedelta

import psycopg
import sqlalchemy as sa

from devtools.localstack import scratch_postgres
from gim_tasks.db import migrate
from gim_tasks.db.engine import make_engine
from gim_tasks.db.partitions import ensure_partitions
from gim_tasks.jobs import export
from gim_tasks.jobs.base import JobContext
from gim_tasks.options.values import Options

START = datetime(2026, 11, 1, tzinfo=UTC)
QUALITY = ("discard-ratio", "hour-rows", "aggregate-verify", "manifest-rows")
DAYS = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    args = parser.parse_args()
    with scratch_postgres("gim-bench-") as server:
        base = server.base.parent
        url = server.url("gim")
        engine = make_engine(url)
        migrate.upgrade(engine)
        with engine.begin() as conn:
            ensure_partitions(
                conn,
                "interaction_segment_fact",
                [(START + timedelta(days=n)).date() for n in range(DAYS)],
            )
            conn.execute(
                sa.text(
                    "INSERT INTO interaction_segment_fact (idb_id, segment_id, start_ts, "
                    "date_time_key, interaction_id, seq, end_ts, queue_key, agent_key, outcome, "
                    "wait_seconds, ring_seconds, talk_seconds, hold_seconds, wrap_seconds, "
                    "answered_in_service_level) SELECT 1, g, :start + (g % (86400 * :days)) * "
                    "interval '1 second', (extract(epoch FROM :start)::bigint "
                    "+ g % (86400 * :days)) / 900 * 900, g, 1, "
                    ":start + (g % (86400 * :days) + 300) * "
                    "interval '1 second', g % 40, g % 500, 'answered', g % 60, 5, g % 600, 0, "
                    "30, g % 3 = 0 FROM generate_series(1, :rows) g"
                ),
                {"start": START, "days": DAYS, "rows": args.rows},
            )
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE interaction_segment_fact")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        baseline_file = base / "baseline.csv"
        query = export.FACT_EXPORTS[1].query
        began = time.perf_counter()
        with (
            psycopg.connect(url) as conn,
            conn.cursor() as cursor,
            baseline_file.open("wb") as sink,
        ):
            with cursor.copy(
                f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)",
                {"start": START, "end": START + timedelta(days=DAYS)},
            ) as copy:
                for block in copy:
                    sink.write(block)
        baseline = time.perf_counter() - began
        quality_off = {("quality", name): "off" for name in QUALITY}

        def run(folder: str, texts: dict[tuple[str, str], str]) -> float:
            with engine.begin() as conn:
                conn.execute(sa.text("TRUNCATE export_mark, export_hold, quality_check"))
            out = base / folder
            options = Options.from_texts(
                {
                    ("gim-export", "output-directory"): str(out),
                    ("gim-export", "chunk-size-seconds"): "86400",
                    ("gim-export", "start-date"): START.date().isoformat(),
                    **texts,
                }
            )
            ctx = JobContext(
                mart=engine,
                idb_urls=[],
                options=options,
                output_base=base,
                now=lambda: START + timedelta(days=DAYS, hours=1),
            )
            began = time.perf_counter()
            export.run(ctx)
            took = time.perf_counter() - began
            exported = sum(
                json.loads((chunk / "manifest.json").read_text())["tables"][
                    "interaction_segment_fact"
                ]["rows"]
                for chunk in out.glob("chunk-*")
            )
            assert exported == args.rows, (exported, args.rows)
            return took

        bare = run("bare", quality_off)
        ours = run("out", {})
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"rows: {args.rows:,} in {DAYS} daily chunks (all six fact tables exported; "
            "five are empty here)"
        )
        print(f"  Job_ExportGIM:           {ours:7.2f} s  {args.rows / ours:12,.0f} rows/s")
        print(f"  ... quality checks off:  {bare:7.2f} s  {args.rows / bare:12,.0f} rows/s")
        print(f"  baseline COPY to a file: {baseline:7.2f} s  {args.rows / baseline:12,.0f} rows/s")
        print(f"  the quality checks' cost: {ours / bare:.2f} x the export without them (Q3)")
        print(f"  peak RSS: {peak:.0f} MB (before export {rss_before:.0f} MB)")
        print(f"  ratio (ours rows/s / baseline rows/s): {baseline / ours:.2f}  (target >= 0.8)")


if __name__ == "__main__":
    main()
