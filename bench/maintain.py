"""Benchmark: purging one expired day must not depend on its size (issue 7, SPEC D2).

Runs (median of 5) of the maintenance step that drops expired partitions: one over a day of N fact
rows, one over a day of 10 x N rows, in the same database server. Baseline, same run: a
row-by-row style ``DELETE`` of the same 10 x N day from a copy (what a non-partitioned purge
would cost). Prints both drop times, their ratio (target <= 2) and the DELETE's time.

Two cases. *Cold*: the expired day's files are written back and evicted from the OS page cache
before the drop, as a day that expired ``days-to-keep-facts`` ago is in production. *Warm*: the
day was just written, so its pages are still cached. PostgreSQL's own work is the same for any
size (catalog rows, one scan of shared buffers); what the kernel does at commit when it
truncates the files is not: it frees the cached pages (warm) and, on a filesystem mounted with
``discard``, issues a synchronous TRIM for every freed extent. The bench prints the mount
options of the data directory; ``--scratch DIR`` puts the server on another filesystem.

Run: ./dev bench maintain [--rows N] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from devtools.localstack import scratch_postgres
from gim_tasks.db import migrate
from gim_tasks.db.engine import make_engine
from gim_tasks.db.partitions import ensure_partitions
from gim_tasks.jobs.base import JobContext
from gim_tasks.jobs.maintain import step_expired_partitions
from gim_tasks.options.values import Options

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
FILL = (
    "INSERT INTO interaction_fact (idb_id, interaction_id, start_ts, date_time_key, status) "
    "SELECT 1, g, CAST(:day AS timestamptz) + (g % 86400) * interval '1 second', 0, "
    "'completed' FROM generate_series(1, :rows) g"
)


def drop_time(url: str, rows: int, cold: bool, repeat: int = 5) -> float:
    """Median over ``repeat`` fills and drops."""
    return statistics.median(_drop_once(url, rows, cold) for _ in range(repeat))


def evict(conn: Connection, table: str) -> None:
    """Write back and drop from the OS page cache every file of ``table`` and its indexes."""
    data = Path(conn.execute(sa.text("SHOW data_directory")).scalar_one())
    files = conn.execute(
        sa.text(
            "SELECT pg_relation_filepath(oid) FROM pg_class WHERE oid = CAST(:t AS regclass) "
            "OR oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = CAST(:t AS regclass))"
        ),
        {"t": table},
    ).scalars()
    os.sync()  # the bench server runs with fsync off: CHECKPOINT leaves dirty pages behind
    for relative in files:
        for path in data.glob(f"{relative}*"):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def mount_options(path: str) -> str:
    """``findmnt``'s view of the filesystem holding ``path`` (device, type, options)."""
    found = subprocess.run(
        ["findmnt", "-no", "SOURCE,FSTYPE,OPTIONS", "-T", path], capture_output=True, text=True
    )
    return found.stdout.strip() or "unknown"


def _drop_once(url: str, rows: int, cold: bool) -> float:
    engine = make_engine(url)
    day = (NOW - timedelta(days=30)).date()
    with engine.begin() as conn:
        ensure_partitions(conn, "interaction_fact", [day])
        conn.execute(sa.text(FILL), {"day": f"{day} 00:00+00", "rows": rows})
        conn.execute(sa.text("CHECKPOINT"))
        if cold:
            evict(conn, f"interaction_fact_p{day:%Y%m%d}")
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
    parser.add_argument(
        "--scratch", help="directory for the throw-away server (default: the system's temp)"
    )
    args = parser.parse_args()
    with scratch_postgres("gim-bench-", args.scratch) as server:
        urls = []
        for name in ("small", "large"):
            server.create_database(name)
            urls.append(server.url(name))
            migrate.upgrade(make_engine(urls[-1]))
        mount = mount_options(str(server.base))
        print(f"data directory {server.base} on {mount}")
        if "discard" in mount.split()[-1].split(","):
            print("  (online discard: every truncate or unlink TRIMs the freed extents at once)")
        for label, cold in (("cold", True), ("warm", False)):
            small = drop_time(urls[0], args.rows, cold)
            large = drop_time(urls[1], args.rows * 10, cold)
            print(f"{label}: drop one expired day of {args.rows:,} rows:   {small * 1000:7.1f} ms")
            print(
                f"{label}: drop one expired day of {args.rows * 10:,} rows: {large * 1000:7.1f} ms"
            )
            target = "  (target <= 2)" if cold else ""
            print(f"{label}: ratio large/small: {large / small:.2f}{target}")
        baseline = delete_time(urls[0], args.rows * 10)
        print(
            f"baseline DELETE of {args.rows * 10:,} rows: {baseline * 1000:8.1f} ms "
            f"(ratio warm drop/DELETE {large / baseline:.3f})"
        )


if __name__ == "__main__":
    main()
