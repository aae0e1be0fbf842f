"""Benchmark: ETL throughput, incremental cost against history, and memory (issue 5).

1. Full load of N party segments (default 1,000,000, with the interactions, agent states and
   campaign attempts the generator writes beside them): Extract + Transform, in this process.
   Baseline, same run, same server: every fact produced by one ``INSERT … SELECT`` per fact in
   the Info Mart, reading the IDB through ``postgres_fdw``, with Transform's own expressions,
   joins and discard checks, into tables keyed, indexed and partitioned as the facts (the
   same rows: the bench prints both counts). Session 1's narrower baseline (segment facts
   only, computed inside the IDB, no transfer) is printed too.
2. Incremental cycle: one new hour of traffic on top of 1 day vs 30 days of history (median
   of seven new hours, alternating between the two, after a steady-state VACUUM ANALYZE).
3. Peak resident memory of this process (the job runs in it): streaming keeps it flat.

``--scale-against M`` (the scale check, e.g. ``--segments 10000000 --scale-against 1000000``)
instead loads M and then N segments, each Extract + Transform in a fresh process (so each peak
RSS is that load's own), and prints the time per segment and the peak RSS of N as ratios to M.
Targets: time per segment <= 1.15x, peak RSS <= 1.2x.

``--idbs N --workers W`` (issue 39, SPEC H2) instead measures Extract fan-out: N IDBs (sizes
``--sizes skewed``: the k-th holds 1/k of the largest's traffic, as a site with one large and
many small IDBs; or ``equal``), W Celery workers of concurrency 1 (real processes, a real
Redis), each Extract a real run (``gim run Job_ExtractICON``) into a fresh Info Mart, its time
from its run record. Headline: the fanned-out Extract of all N IDBs vs the largest IDB
extracted alone by the same workers (target <= 1.5); also printed: the same N IDBs one after
the other (``extract-fan-out = false``, the behaviour before H2) and the ideal on this machine
(the CPU time of all N extractions over its cores, against the largest alone). Transform is
not fanned out (one statement per fact over staging) and is not part of these times.

Runs its own PostgreSQL on a free port in a temporary directory; stops it at the end.
Run: ./dev bench etl [--segments N] [--parallel N] [--rounds 3] [--scale-against M]
     ./dev bench etl --idbs 8 --workers 4 [--segments N] [--sizes skewed|equal] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import sqlalchemy as sa

from bench import median_per_history
from devtools.localstack import PG_SUPERUSER, PostgresServer, scratch_postgres
from gim_tasks.db import migrate
from gim_tasks.db.calendar import key_sql
from gim_tasks.db.engine import make_engine
from gim_tasks.idb.generator import arrival_weight, generate
from gim_tasks.idb.schema import init_idb
from gim_tasks.jobs import extract, transform
from gim_tasks.jobs.base import JobContext
from gim_tasks.options.values import Options

START = datetime(2026, 10, 1, tzinfo=UTC)
SEGMENTS_PER_CALL = 1.1
INCREMENTAL_SAMPLES = 7


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_db(server: PostgresServer, name: str, mart: bool) -> str:
    server.create_database(name)
    url = server.url(name)
    engine = make_engine(url)
    if mart:
        migrate.upgrade(engine)
    else:
        init_idb(engine)
    engine.dispose()  # a migrated mart is a template: no session may stay in it
    return url


OPTIONS = Options.defaults()  # main() sets parallel-tables from --parallel


#: Seconds of the last cycle's Extract and Transform (issue 40: where the time goes).
PHASES: dict[str, float] = {}


def cycle(mart_url: str, idb_url: str) -> float:
    engine = make_engine(mart_url)
    began = time.perf_counter()
    for name, body in (("extract", extract.run), ("transform", transform.run)):
        started = time.perf_counter()
        body(JobContext(mart=engine, idb_urls=[idb_url], options=OPTIONS))
        PHASES[name] = time.perf_counter() - started
    elapsed = time.perf_counter() - began
    engine.dispose()
    return elapsed


PROFILE_SQL = """
SELECT sum(heap_blks_read), sum(heap_blks_hit), sum(idx_blks_read), sum(idx_blks_hit)
FROM pg_statio_user_tables
"""


def cycle_in_process(
    mart_url: str, idb_url: str, parallel: int | None
) -> tuple[float, float, dict[str, float]]:
    """One Extract + Transform in this (fresh) process: seconds, peak RSS in MB, and the
    profile: each job's seconds, the Info Mart's block reads (from disk or the OS cache) and
    hits (shared buffers) over heap and indexes, checkpoints requested."""
    global OPTIONS
    if parallel:
        OPTIONS = Options.from_texts({("gim-etl", "parallel-tables"): str(parallel)})
    engine = make_engine(mart_url)
    profile: dict[str, float] = {}
    began = time.perf_counter()
    for name, body in (("extract", extract.run), ("transform", transform.run)):
        start = time.perf_counter()
        body(JobContext(mart=engine, idb_urls=[idb_url], options=OPTIONS))
        profile[f"{name}_s"] = round(time.perf_counter() - start, 1)
    elapsed = time.perf_counter() - began
    engine.dispose()
    with psycopg.connect(mart_url) as conn:
        heap_read, heap_hit, idx_read, idx_hit = conn.execute(PROFILE_SQL).fetchone()  # type: ignore[misc]
        profile["heap_hit_ratio"] = round(heap_hit / max(heap_hit + heap_read, 1), 3)
        profile["index_hit_ratio"] = round(idx_hit / max(idx_hit + idx_read, 1), 3)
        profile["blocks_read_mb"] = round((heap_read + idx_read) * 8 / 1024)
        row = conn.execute("SELECT checkpoints_req, checkpoints_timed FROM pg_stat_bgwriter")
        profile["checkpoints"] = sum(row.fetchone() or (0, 0))
        profile["shared_buffers_mb"] = float(
            conn.execute(
                "SELECT setting::int * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers'"
            ).fetchone()[0]  # type: ignore[index]
        )
    return elapsed, rss_mb(), profile


def scale(segments: int, against: int, parallel: int | None) -> None:
    """Time per segment and peak RSS of a full load of ``segments`` against ``against``."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    results = {}
    with scratch_postgres("gim-bench-") as server:
        for n in (against, segments):
            began = time.perf_counter()
            idb = make_db(server, f"scale_idb_{n}", mart=False)
            mart = make_db(server, f"scale_mart_{n}", mart=True)
            rate = 40_000
            with psycopg.connect(idb, autocommit=True) as conn:
                written = generate(
                    conn, START, hours_for(n, rate), agents=500, queues=40, rate=rate, seed=5
                )
                conn.execute("VACUUM ANALYZE")
            print(
                f"generated {written['party_segments']:,} party segments in "
                f"{time.perf_counter() - began:.0f} s",
                flush=True,
            )
            with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
                conn.execute("SELECT pg_stat_reset_shared('bgwriter')")
            with spawn.Pool(1) as pool:
                seconds, rss, profile = pool.apply(cycle_in_process, (mart, idb, parallel))
            results[n] = (written["party_segments"], seconds, rss)
            print(
                f"  extract+transform: {seconds:.1f} s, "
                f"{seconds / written['party_segments'] * 1e6:.2f} us/segment, "
                f"peak RSS {rss:.0f} MB; profile {profile}",
                flush=True,
            )
            with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
                for name in (f"scale_idb_{n}", f"scale_mart_{n}"):  # room for the next size
                    conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    (small, small_s, small_rss), (big, big_s, big_rss) = results[against], results[segments]
    per_segment = (big_s / big) / (small_s / small)
    print(
        f"scale {big:,} vs {small:,} segments: time per segment x{per_segment:.2f} "
        f"(target <= 1.15), peak RSS x{big_rss / small_rss:.2f} (target <= 1.2)"
    )


def hours_for(segments: int, rate: int) -> int:
    """Hours of traffic from START that hold about ``segments`` party segments."""
    hours, expected = 0, 0.0
    while expected < segments:
        expected += arrival_weight((START.hour + hours) % 24 + 0.5) * rate * SEGMENTS_PER_CALL
        hours += 1
    return hours


BASELINE_SQL = """
CREATE TABLE base_queue AS SELECT id AS queue_key, id, service_level_seconds FROM queue;
CREATE TABLE base_agent AS SELECT id AS agent_key, id FROM agent;
CREATE UNIQUE INDEX ON base_queue (id);
CREATE UNIQUE INDEX ON base_agent (id);
CREATE TABLE base_segment_fact (
  idb_id smallint, segment_id bigint, start_ts timestamptz, date_time_key bigint,
  interaction_id bigint, seq smallint, end_ts timestamptz, queue_key int, agent_key int,
  outcome text, wait_seconds int, ring_seconds int, talk_seconds int, hold_seconds int,
  wrap_seconds int, answered_in_service_level boolean, run_id bigint,
  PRIMARY KEY (idb_id, segment_id, start_ts)) PARTITION BY RANGE (start_ts);
"""
BASELINE_INSERT = """
INSERT INTO base_segment_fact
SELECT 1, s.id, s.queued_at, (floor(extract(epoch FROM s.queued_at) / 900) * 900)::bigint,
  s.interaction_id, s.seq, s.ended_at, q.queue_key, a.agent_key, s.outcome,
  round(extract(epoch FROM coalesce(s.routed_at, s.ended_at) - s.queued_at))::int,
  round(extract(epoch FROM s.talk_start_at - s.ringing_at))::int,
  round(extract(epoch FROM s.wrap_start_at - s.talk_start_at))::int - coalesce(s.hold_seconds, 0),
  s.hold_seconds, round(extract(epoch FROM s.ended_at - s.wrap_start_at))::int,
  s.routed_at IS NOT NULL AND s.routed_at - s.queued_at
    <= make_interval(secs => coalesce(q.service_level_seconds, 20)), 1
FROM party_segment s LEFT JOIN base_queue q ON q.id = s.queue_id
LEFT JOIN base_agent a ON a.id = s.agent_id
WHERE s.queued_at IS NOT NULL AND NOT (s.ended_at < s.queued_at)
"""


def baseline(idb_url: str) -> tuple[float, int]:
    with psycopg.connect(idb_url, autocommit=True) as conn:
        conn.execute(BASELINE_SQL)
        days = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT (queued_at AT TIME ZONE 'UTC')::date FROM party_segment "
                "WHERE queued_at IS NOT NULL"
            )
        ]
        for day in days:
            conn.execute(
                f"CREATE TABLE base_p{day:%Y%m%d} PARTITION OF base_segment_fact "
                f"FOR VALUES FROM ('{day} 00:00+00') TO ('{day + timedelta(days=1)} "
                "00:00+00')"
            )
        conn.execute("CHECKPOINT")
        began = time.perf_counter()
        rows = conn.execute(BASELINE_INSERT).rowcount
        return time.perf_counter() - began, rows


def fdw_baseline(server: PostgresServer, mart_url: str, idb_db: str) -> tuple[float, int]:
    """Every fact's rows produced by one ``INSERT … SELECT`` per fact in the Info Mart, reading
    the IDB through ``postgres_fdw`` (fetch_size 10,000) and joining the dimensions our run
    loaded, with the very column expressions, joins and discard checks of
    :data:`transform.FACTS`, into tables keyed, indexed and partitioned as the facts are.
    The floor of "the same fact rows from the same source" in plain SQL: no staging, no
    batches, no marks, no idempotence, no discards table, no crash safety."""
    with psycopg.connect(mart_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
        conn.execute(
            "CREATE SERVER base_idb FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', "
            f"port '{server.port}', dbname '{idb_db}', fetch_size '10000')"
        )
        conn.execute(
            f"CREATE USER MAPPING FOR CURRENT_USER SERVER base_idb OPTIONS (user '{PG_SUPERUSER}')"
        )
        conn.execute("CREATE SCHEMA base_src")
        sources = sorted({spec.source for spec in transform.FACTS})
        conn.execute(
            f"IMPORT FOREIGN SCHEMA public LIMIT TO ({', '.join(sources)}) "
            "FROM SERVER base_idb INTO base_src"
        )
        days = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT (start_ts AT TIME ZONE 'UTC')::date FROM ("
                + " UNION ALL ".join(f"SELECT start_ts FROM {f.fact.name}" for f in transform.FACTS)
                + ") x"
            )
        ]
        statements = []
        for spec in transform.FACTS:
            table = f"base_{spec.fact.name}"
            id_column = [c.name for c in spec.fact.primary_key.columns][1]
            conn.execute(
                f"CREATE TABLE {table} (LIKE {spec.fact.name} INCLUDING DEFAULTS, "
                f"PRIMARY KEY (idb_id, {id_column}, start_ts)) PARTITION BY RANGE (start_ts)"
            )
            conn.execute(f"CREATE INDEX ON {table} (date_time_key)")
            for day in days:
                conn.execute(
                    f"CREATE TABLE {table}_p{day:%Y%m%d} PARTITION OF {table} FOR VALUES FROM "
                    f"('{day} 00:00+00') TO ('{day + timedelta(days=1)} 00:00+00')"
                )
            columns = ", ".join(spec.columns)
            expressions = ", ".join(spec.columns.values())
            statements.append(
                f"INSERT INTO {table} (idb_id, {id_column}, start_ts, date_time_key, {columns}) "
                f"SELECT s.idb_id, s.id, {spec.start}, "
                f"{key_sql(spec.start)}, {expressions} "
                f"FROM (SELECT 1::smallint AS idb_id, * FROM base_src.{spec.source}) s "
                f"{spec.joins} WHERE {spec.where} AND ({transform.discard_reason(spec)}) IS NULL"
            )
        conn.execute("CHECKPOINT")
        began = time.perf_counter()
        rows = sum(conn.execute(statement).rowcount for statement in statements)
        return time.perf_counter() - began, rows


def count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
        return int(row[0]) if row else 0


def _extract_run(env: dict[str, str], workers: int, log_dir: Path) -> tuple[float, float]:
    """One Extract run on ``workers`` fresh workers: (wall seconds from its run record, CPU
    seconds of the PostgreSQL server and the workers during it)."""
    from devtools.processes import ProcessGroup, worker_args

    engine = make_engine(env["GIM_DATABASE_URL"])
    group = ProcessGroup(env, log_dir=log_dir, grace=20.0)
    gim = str(Path(sys.executable).parent / "gim")
    try:
        for n in range(workers):
            name = f"w{n}"
            group.start(name, [gim, *worker_args(f"{name}-{os.getpid()}", 1), "--queues", "etl"])
        time.sleep(3)  # the workers connect to the broker
        cpu = _cpu_seconds()
        done = subprocess.run(
            [gim, "run", "Job_ExtractICON", "--wait"],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode != 0:
            raise SystemExit(f"the Extract run failed: {done.stdout}{done.stderr}")
        cpu = _cpu_seconds() - cpu
        with engine.connect() as conn:
            wall = conn.execute(
                sa.text(
                    "SELECT extract(epoch FROM ended_at - started_at) FROM job_run "
                    "WHERE job = 'Job_ExtractICON' ORDER BY id DESC LIMIT 1"
                )
            ).scalar_one()
        return float(wall), cpu
    finally:
        group.stop_all()
        engine.dispose()


def _cpu_seconds() -> float:
    """CPU seconds this machine spent busy so far (all processes): /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def fan_out(args: argparse.Namespace) -> None:
    """``--idbs N --workers W``: see the module docstring."""
    from bench import servers
    from gim_tasks.schedule.jobs import EXTRACT_PART

    cores = os.cpu_count() or 1
    print(
        f"Extract fan-out (H2): {args.idbs} IDBs ({args.sizes}), {args.workers} workers of "
        f"concurrency 1, {cores} cores, {args.rounds} round(s); part task {EXTRACT_PART}"
    )
    with servers() as (base, pg, rd):
        rate = 40_000
        hours = hours_for(args.segments, rate)
        idbs = []
        for k in range(1, args.idbs + 1):
            share = 1 / k if args.sizes == "skewed" else 1.0
            url = make_db(pg, f"idb{k}", mart=False)
            with psycopg.connect(url, autocommit=True) as conn:
                written = generate(
                    conn, START, hours, agents=200, queues=20, rate=round(rate * share), seed=k
                )
                conn.execute("VACUUM ANALYZE")
            idbs.append(url)
            print(f"  idb{k}: {written['party_segments']:,} party segments")
        make_db(pg, "mart_template", mart=True)
        with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:  # its migration's
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = 'mart_template'"
            )
        marts = iter(range(1000))

        def measure(urls: list[str], fan: bool) -> tuple[float, float]:
            name = f"mart{next(marts)}"
            pg.create_database(name, template="mart_template")
            url = pg.url(name)
            env = {
                **os.environ,
                "GIM_DATABASE_URL": url,
                "GIM_REDIS_URL": rd.url(0),
                "GIM_IDB_URLS": ",".join(urls),
                "GIM_LOG_LEVEL": "WARNING",
            }
            value = "true" if fan else "false"
            subprocess.run(
                [
                    str(Path(sys.executable).parent / "gim"),
                    "config",
                    "set",
                    "gim-etl",
                    "extract-fan-out",
                    value,
                ],
                env=env,
                check=True,
                capture_output=True,
            )
            return _extract_run(env, args.workers, base)

        alone, fanned, serial, cpu_all = [], [], [], []
        for n in range(args.rounds):
            alone.append(measure(idbs[:1], True)[0])
            wall, cpu = measure(idbs, True)
            fanned.append(wall)
            cpu_all.append(cpu)
            if n == 0:
                serial.append(measure(idbs, False)[0])
            print(
                f"  round {n + 1}: largest alone {alone[-1]:.2f} s, all {args.idbs} fanned "
                f"out {fanned[-1]:.2f} s (CPU {cpu:.1f} s)"
            )
    a, f = statistics.median(alone), statistics.median(fanned)
    ideal = max(1.0, statistics.median(cpu_all) / cores / a)
    print(
        f"all {args.idbs} one after the other (extract-fan-out = false): {serial[0]:.2f} s = "
        f"{serial[0] / a:.2f}x the largest alone; fanned out: {serial[0] / f:.2f}x faster"
    )
    print(
        f"ideal on this machine (CPU of all / {cores} cores / largest alone): {ideal:.2f}x; "
        f"fanned out / ideal = {f / a / ideal:.2f}"
    )
    print(
        f"fan-out: all {args.idbs} IDBs / largest alone = {f / a:.2f} (median of "
        f"{args.rounds}; target <= 1.5)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--idbs", type=int, help="H2: measure Extract fan-out over this many IDBs")
    parser.add_argument("--workers", type=int, default=4, help="with --idbs: Celery workers")
    parser.add_argument(
        "--sizes",
        choices=("skewed", "equal"),
        default="skewed",
        help="with --idbs: IDB k holds 1/k of the largest (skewed) or the same",
    )
    parser.add_argument("--rounds", type=int, default=3, help="median of this many")
    parser.add_argument(
        "--parallel",
        type=int,
        help="[gim-etl] parallel-tables for our jobs (default: the option's default)",
    )
    parser.add_argument(
        "--history-rate",
        type=int,
        default=600,
        help="calls/h at peak for the history of the incremental test",
    )
    parser.add_argument(
        "--scale-against",
        type=int,
        help="compare a full load of --segments with one of this many (time/segment, RSS)",
    )
    args = parser.parse_args()
    if args.idbs:
        fan_out(args)
        return
    if args.scale_against:
        scale(args.segments, args.scale_against, args.parallel)
        return
    global OPTIONS
    if args.parallel:
        OPTIONS = Options.from_texts({("gim-etl", "parallel-tables"): str(args.parallel)})
    print(f"parallel-tables = {OPTIONS.get('gim-etl', 'parallel-tables')}")
    with scratch_postgres("gim-bench-") as server:
        rss_start = rss_mb()
        rate = 40_000
        hours = hours_for(args.segments, rate)
        idb = make_db(server, "bench_idb", mart=False)
        make_db(server, "bench_mart_template", mart=True)
        with psycopg.connect(idb, autocommit=True) as conn:
            written = generate(conn, START, hours, agents=500, queues=40, rate=rate, seed=5)
        with psycopg.connect(idb, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        # Rounds: each a fresh Info Mart (from a migrated template), our load then the fdw
        # baseline into the same mart (it joins the dimensions our run loaded); the medians.
        ours_runs, fdw_runs, extract_runs, transform_runs = [], [], [], []
        for n in range(args.rounds):
            server.create_database(f"bench_mart_{n}", template="bench_mart_template")
            mart = server.url(f"bench_mart_{n}")  # the last round's is counted below
            ours_runs.append(cycle(mart, idb))
            extract_runs.append(PHASES["extract"])
            transform_runs.append(PHASES["transform"])
            fdw_run, fdw_rows = fdw_baseline(server, mart, "bench_idb")
            fdw_runs.append(fdw_run)
            print(
                f"  round {n + 1}: ours {ours_runs[-1]:.2f} s (Extract {extract_runs[-1]:.2f} s, "
                f"Transform {transform_runs[-1]:.2f} s), fdw baseline {fdw_run:.2f} s",
                flush=True,
            )
        ours, fdw_seconds = statistics.median(ours_runs), statistics.median(fdw_runs)
        phases = {
            "extract": statistics.median(extract_runs),
            "transform": statistics.median(transform_runs),
        }
        facts = count(mart, "SELECT count(*) FROM interaction_segment_fact")
        all_facts = count(
            mart,
            "SELECT "
            + " + ".join(f"(SELECT count(*) FROM {f.fact.name})" for f in transform.FACTS),
        )
        base_seconds, base_rows = baseline(idb)
        print(
            f"full load: {written['party_segments']:,} party segments "
            f"({sum(v for k, v in written.items() if k != 'malformed'):,} source rows in all), "
            f"median of {args.rounds}"
        )
        print(
            f"  gim-tasks extract+transform: {ours:8.2f} s  "
            f"{written['party_segments'] / ours:10,.0f} segments/s  ({facts:,} segment facts)"
        )
        source_rows = sum(v for k, v in written.items() if k != "malformed")
        print(
            f"    of which Extract {phases['extract']:.2f} s "
            f"({source_rows / phases['extract']:,.0f} source rows/s into staging), "
            f"Transform {phases['transform']:.2f} s "
            f"({all_facts / phases['transform']:,.0f} fact rows/s)"
        )
        print(
            f"  baseline, segment facts only, inside the IDB: {base_seconds:8.2f} s  "
            f"{base_rows / base_seconds:10,.0f} segments/s  ({base_rows:,} rows)"
        )
        print(
            f"  baseline, every fact, one INSERT ... SELECT each through postgres_fdw: "
            f"{fdw_seconds:8.2f} s  ({fdw_rows:,} fact rows; ours wrote {all_facts:,})"
        )
        print(
            f"  ratio ours/baseline (every fact, from the IDB): {ours / fdw_seconds:.2f}  "
            "(target <= 1.0, issue 40)"
        )
        print(
            f"  ratio ours/segment facts inside the IDB (session 1's baseline): "
            f"{ours / base_seconds:.2f}"
        )
        print(f"  peak RSS of the job process: {rss_mb():.0f} MB (at start {rss_start:.0f} MB)")

        marts = {}
        for days in (1, 30):
            history_idb = make_db(server, f"hist_idb_{days}", mart=False)
            history_mart = make_db(server, f"hist_mart_{days}", mart=True)
            with psycopg.connect(history_idb, autocommit=True) as conn:
                generate(
                    conn, START, days * 24, agents=200, queues=20, rate=args.history_rate, seed=days
                )
            cycle(history_mart, history_idb)
            with psycopg.connect(history_mart, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")  # steady state: autovacuum has seen the history
            marts[days] = (history_idb, history_mart)
        results = median_per_history(
            marts,
            INCREMENTAL_SAMPLES,
            START,
            {"agents": 200, "queues": 20, "rate": args.history_rate * 4},
            lambda idb, mart: cycle(mart, idb),
        )
        print(f"incremental cycle, one new hour of traffic (median of {INCREMENTAL_SAMPLES}):")
        print(f"  on 1 day of history:   {results[1]:.3f} s")
        print(f"  on 30 days of history: {results[30]:.3f} s")
        print(f"  ratio 30d/1d: {results[30] / results[1]:.2f}  (target <= 1.2)")
        print(
            f"full load ours/fdw baseline: {ours / fdw_seconds:.2f} (median of {args.rounds}; "
            "target <= 1.0, issue 40)"
        )


if __name__ == "__main__":
    main()
