"""Extract and Transform against real PostgreSQL: D1 under concurrent out-of-order writers and
crashes, Transform idempotence, discards (R3), late updates, D2 partitions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from gim_tasks.db import mart_tables as mart
from gim_tasks.db.engine import make_engine
from gim_tasks.idb.generator import generate
from gim_tasks.idb.schema import init_idb
from gim_tasks.idb.simulate import simulate
from gim_tasks.jobs import extract, transform
from gim_tasks.jobs.base import JobContext
from gim_tasks.options.values import Options

START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
GIM = str(Path(sys.executable).with_name("gim"))


@pytest.fixture
def idb_url(make_database: Callable[..., str]) -> str:
    url = make_database(migrated=False)
    init_idb(make_engine(url))
    return url


def options(batch: int = 50000, parallel: int = 2) -> Options:
    return Options.from_texts(
        {
            ("gim-etl", "extract-batch-size"): str(batch),
            ("gim-etl", "parallel-tables"): str(parallel),
        }
    )


def cycle(mart_url: str, idb_urls: list[str], batch: int = 50000, parallel: int = 2) -> JobContext:
    """One ETL cycle in process: Extract then Transform."""
    engine = make_engine(mart_url)
    ctx = JobContext(mart=engine, idb_urls=idb_urls, options=options(batch, parallel))
    extract.run(ctx)
    transform.run(JobContext(mart=engine, idb_urls=idb_urls, options=options(batch, parallel)))
    return ctx


def facts(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every fact row (without the run id), sorted: comparable between two Info Marts."""
    result = {}
    with make_engine(url).connect() as conn:
        for table in mart.FACTS:
            columns = [c for c in table.columns if c.name != "run_id"]
            rows = conn.execute(sa.select(*columns)).all()
            result[table.name] = sorted(tuple(r) for r in rows)
    return result


def count(url: str, sql: str) -> int:
    with make_engine(url).connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def test_d1_out_of_order_writers_during_repeated_extracts_lose_and_duplicate_nothing(
    idb_url: str, database_url: str, make_database: Callable[..., str]
) -> None:
    stop = threading.Event()
    writer = threading.Thread(
        target=simulate,
        kwargs={
            "url": idb_url,
            "rate_per_hour": 40000,
            "writers": 6,
            "stop": stop,
            "call_seconds": 1,
        },
    )
    writer.start()
    cycles = 0
    deadline = time.monotonic() + 8
    try:
        # Eight seconds of writing and at least three cycles during it, however loaded the
        # machine (was: "three cycles within eight seconds", which a busy 2-core VM missed).
        while cycles < 3 or time.monotonic() < deadline:
            cycle(database_url, [idb_url], batch=100)
            cycles += 1
    finally:
        stop.set()
        writer.join()
    cycle(database_url, [idb_url])  # the final cycle after writers stopped
    reference = make_database()
    cycle(reference, [idb_url])  # one clean pass over the same source
    got, expected = facts(database_url), facts(reference)
    assert got == expected
    segments = count(idb_url, "SELECT count(*) FROM party_segment")
    assert segments > 20
    assert len(got["interaction_segment_fact"]) == segments
    # Late updates arrived: every call the closer ended has its end in the fact.
    ended = count(idb_url, "SELECT count(*) FROM party_segment WHERE ended_at IS NOT NULL")
    assert ended > 0
    assert (
        count(
            database_url, "SELECT count(*) FROM interaction_segment_fact WHERE end_ts IS NOT NULL"
        )
        == ended
    )


def test_d1_extract_sees_row_committed_late_with_lower_id(idb_url: str, database_url: str) -> None:
    generate(psycopg.connect(idb_url, autocommit=True), START, 1, agents=5, queues=2, rate=5)
    slow = psycopg.connect(idb_url)
    slow.execute("INSERT INTO campaign (name) VALUES ('slow, lower id')")  # not committed yet
    with psycopg.connect(idb_url, autocommit=True) as fast:
        fast.execute("INSERT INTO campaign (name) VALUES ('fast, higher id')")
    cycle(database_url, [idb_url])
    assert count(database_url, "SELECT count(*) FROM stg_campaign WHERE name LIKE 'slow%'") == 0
    slow.commit()
    slow.close()
    cycle(database_url, [idb_url])
    names = count(
        database_url,
        "SELECT count(*) FROM stg_campaign WHERE name IN ('slow, lower id', 'fast, higher id')",
    )
    assert names == 2
    assert count(database_url, "SELECT count(*) FROM dim_campaign") == count(
        idb_url, "SELECT count(*) FROM campaign"
    )


def _kill_extract_midway(gim_env: dict[str, str], idb_url: str, rows: int) -> tuple[str, int]:
    """Start Extract in its own process and SIGKILL it once ``rows`` source rows are committed
    to staging (its marks say so): synchronised on progress, not on a sleep. Returns the run's
    state at the kill and the rows committed by then."""
    env = {**os.environ, **gim_env, "GIM_IDB_URLS": idb_url}
    process = subprocess.Popen(
        [GIM, "run", "Job_ExtractICON", "--local"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    mart = make_engine(gim_env["GIM_DATABASE_URL"])
    deadline, committed = time.monotonic() + 120, 0
    while committed < rows and time.monotonic() < deadline and process.poll() is None:
        with mart.connect() as conn:
            committed = conn.execute(
                sa.text("SELECT coalesce(sum(rows_extracted), 0) FROM extract_mark")
            ).scalar_one()
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with mart.connect() as conn:
        state = conn.execute(sa.text("SELECT state FROM job_run ORDER BY id")).scalar_one()
        committed = conn.execute(
            sa.text("SELECT coalesce(sum(rows_extracted), 0) FROM extract_mark")
        ).scalar_one()
    mart.dispose()
    return state, committed


@pytest.mark.parametrize("share", [0.0, 0.3, 0.6])
def test_d1_crash_during_extract_then_rerun_gives_one_pass_result(
    gim_env: dict[str, str], idb_url: str, make_database: Callable[..., str], share: float
) -> None:
    with psycopg.connect(idb_url, autocommit=True) as conn:
        generate(conn, START, 6, agents=50, queues=5, rate=3000, seed=7)
    total = sum(
        count(idb_url, f"SELECT count(*) FROM {table}")
        for table in ("interaction", "party_segment", "agent_session", "agent_state")
    )
    assert total > 3_000  # ~35 batches of 100: every kill lands between two of them
    rows = max(1, int(total * share))  # killed once this many are committed to staging
    mart_url = gim_env["GIM_DATABASE_URL"]
    with make_engine(mart_url).begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO option_value VALUES ('gim-etl', "
                "'extract-batch-size', '100', 'test', now())"
            )
        )
    state, committed = _kill_extract_midway(gim_env, idb_url, rows)
    # It crashed mid-Extract: Running in its record, part of the source in staging.
    assert state == "Running" and rows <= committed < total, (state, committed, total)
    # The killed run is left Running; the next local run marks it Failed (R2) and continues.
    env = {**os.environ, **gim_env, "GIM_IDB_URLS": idb_url}
    for job in ("Job_ExtractICON", "Job_TransformGIM"):
        result = subprocess.run(
            [GIM, "run", job, "--local"], env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stdout + result.stderr
    with make_engine(mart_url).connect() as conn:
        states = [r[0] for r in conn.execute(sa.text("SELECT state FROM job_run ORDER BY id"))]
    assert len(states) == 3 and states[0] == "Failed"  # worker lost (R2), then reruns
    assert all(state.startswith("Completed") for state in states[1:]), states
    reference = make_database()
    cycle(reference, [idb_url])
    assert facts(mart_url) == facts(reference)


def test_transform_is_idempotent_even_when_staging_is_replayed(
    idb_url: str, database_url: str
) -> None:
    with psycopg.connect(idb_url, autocommit=True) as conn:
        generate(conn, START, 3, agents=20, queues=4, rate=500)
    cycle(database_url, [idb_url])
    first = facts(database_url)
    engine = make_engine(database_url)
    ctx = JobContext(mart=engine, idb_urls=[idb_url], options=options())
    transform.run(ctx)
    assert ctx.counts.read == 0 and facts(database_url) == first
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE transform_mark SET last_load_seq = 0"))  # replay all
    transform.run(JobContext(mart=engine, idb_urls=[idb_url], options=options()))
    assert facts(database_url) == first


def test_r3_malformed_rows_are_discarded_with_reason_and_run_has_warnings(
    idb_url: str, database_url: str
) -> None:
    with psycopg.connect(idb_url, autocommit=True) as conn:
        written = generate(conn, START, 4, agents=30, queues=5, rate=4000, seed=3)
        conn.execute(
            "UPDATE party_segment SET agent_id = NULL WHERE id = (SELECT min(id) "
            "FROM party_segment WHERE agent_id IS NOT NULL)"
        )
    assert written["malformed"] > 0
    engine = make_engine(database_url)
    extract.run(JobContext(mart=engine, idb_urls=[idb_url], options=options()))
    ctx = JobContext(mart=engine, idb_urls=[idb_url], options=options())
    transform.run(ctx)
    assert ctx.counts.warnings == 1 and ctx.counts.discarded >= written["malformed"]
    with engine.connect() as conn:
        reasons = {
            r[0].split(" id ")[0].split(" (")[0]
            for r in conn.execute(
                sa.text(
                    "SELECT reason FROM discard WHERE source_table = 'interaction_segment_fact'"
                )
            )
        }
        segment_discards = conn.execute(
            sa.text("SELECT count(*) FROM discard WHERE source_table = 'interaction_segment_fact'")
        ).scalar_one()
    assert segment_discards == written["malformed"]
    assert reasons <= {"ends before it starts", "unknown queue", "unknown agent"}
    # Discarded plus loaded is every source row.
    assert (
        count(database_url, "SELECT count(*) FROM interaction_segment_fact") + segment_discards
        == written["party_segments"]
    )


def test_late_update_rewrites_the_fact_and_a_corrected_row_leaves_discards(
    idb_url: str, database_url: str
) -> None:
    with psycopg.connect(idb_url, autocommit=True) as conn:
        generate(conn, START, 1, agents=5, queues=2, rate=10)
        call = conn.execute(
            "SELECT id, queued_at FROM party_segment ORDER BY id LIMIT 1"
        ).fetchone()
        assert call is not None
        conn.execute(
            "UPDATE party_segment SET ended_at = NULL, outcome = 'active' WHERE id = %s", (call[0],)
        )
    cycle(database_url, [idb_url])
    query = f"SELECT count(*) FROM interaction_segment_fact WHERE segment_id = {call[0]}"
    assert count(database_url, query + " AND end_ts IS NULL") == 1
    with psycopg.connect(idb_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE party_segment SET ended_at = queued_at + interval '5 minutes', "
            "outcome = 'answered' WHERE id = %s",
            (call[0],),
        )
    cycle(database_url, [idb_url])
    assert count(database_url, query) == 1
    assert count(database_url, query + " AND end_ts IS NOT NULL AND outcome = 'answered'") == 1
    # Break it, then correct it: the discard appears, then disappears.
    with psycopg.connect(idb_url, autocommit=True) as conn:
        conn.execute("UPDATE party_segment SET queue_id = 424242 WHERE id = %s", (call[0],))
    cycle(database_url, [idb_url])
    assert (
        count(
            database_url,
            f"SELECT count(*) FROM discard WHERE source_id = {call[0]} "
            "AND reason = 'unknown queue id 424242'",
        )
        == 1
    )
    with psycopg.connect(idb_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE party_segment SET queue_id = (SELECT min(id) FROM queue) WHERE id = %s",
            (call[0],),
        )
    cycle(database_url, [idb_url])
    assert count(database_url, f"SELECT count(*) FROM discard WHERE source_id = {call[0]}") == 0


def test_d1_new_rows_go_straight_to_staging_and_changed_rows_are_merged_in_one_cycle(
    idb_url: str, database_url: str, make_database: Callable[..., str]
) -> None:
    """Issue 40: a batch whose rows are all new to staging is copied straight into it, the
    others go through the merge. A cycle holding both (the oldest and the newest segments
    changed, new traffic added), in batches small enough to mix them, stores every row version
    once and gives the facts of one clean load."""
    with psycopg.connect(idb_url, autocommit=True) as conn:
        generate(conn, START + timedelta(hours=10), 2, agents=5, queues=2, rate=300)
    cycle(database_url, [idb_url], batch=40)
    with psycopg.connect(idb_url, autocommit=True) as conn:
        changed = [
            row[0]
            for row in conn.execute(
                "UPDATE party_segment SET hold_seconds = coalesce(hold_seconds, 0) + 7 "
                "WHERE id IN (SELECT id FROM party_segment ORDER BY id LIMIT 5) "
                "OR id = (SELECT max(id) FROM party_segment) RETURNING id"
            )
        ]
        generate(conn, START + timedelta(hours=12), 1, agents=5, queues=2, rate=300, seed=2)
    segments = count(idb_url, "SELECT count(*) FROM party_segment")
    assert len(changed) == 6 and segments > 3 * 40  # several batches, some of them mixed
    cycle(database_url, [idb_url], batch=40)
    assert count(database_url, "SELECT count(*) FROM stg_party_segment") == segments
    with psycopg.connect(idb_url) as source, psycopg.connect(database_url) as target:
        holds = dict(
            source.execute(
                "SELECT id, hold_seconds FROM party_segment WHERE id = ANY(%s)", (changed,)
            ).fetchall()
        )
        staged = dict(
            target.execute(
                "SELECT id, hold_seconds FROM stg_party_segment WHERE id = ANY(%s)", (changed,)
            ).fetchall()
        )
    assert staged == holds
    reference = make_database()
    cycle(reference, [idb_url])
    assert facts(database_url) == facts(reference)


def test_d2_facts_land_in_day_partitions(idb_url: str, database_url: str) -> None:
    with psycopg.connect(idb_url, autocommit=True) as conn:
        generate(conn, START - timedelta(hours=2), 4, agents=10, queues=3, rate=300)
    cycle(database_url, [idb_url])
    with make_engine(database_url).connect() as conn:
        partitions = {
            r[0]
            for r in conn.execute(
                sa.text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'interaction_fact'"
                )
            )
        }
        per_partition = conn.execute(
            sa.text(
                "SELECT tableoid::regclass::text, min(start_ts), max(start_ts) "
                "FROM interaction_fact GROUP BY 1"
            )
        ).all()
    assert partitions == {"interaction_fact_p20261122", "interaction_fact_p20261123"}
    for name, low, high in per_partition:
        day = datetime.strptime(name[-8:], "%Y%m%d").replace(tzinfo=UTC)
        assert day <= low and high < day + timedelta(days=1)


def test_generate_is_deterministic(make_database: Callable[..., str]) -> None:
    results = []
    for _ in range(2):
        url = make_database(migrated=False)
        init_idb(make_engine(url))
        with psycopg.connect(url, autocommit=True) as conn:
            counts = generate(conn, START, 2, agents=10, queues=3, rate=200, seed=42)
            digest = conn.execute(
                "SELECT md5(string_agg(concat_ws('|', queued_at, queue_id, agent_id, outcome), "
                "',' ORDER BY id)) FROM party_segment"
            ).fetchone()
        results.append((counts, digest))
    assert results[0] == results[1]
    assert results[0][0]["interactions"] > 0


def test_cli_idb_generate_json_and_etl_status(
    gim_env: dict[str, str],
    idb_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gim_tasks.cli.main import main as gim
    from gim_tasks.settings import get_settings

    monkeypatch.setenv("GIM_IDB_URLS", idb_url)
    get_settings.cache_clear()
    assert (
        gim(
            [
                "idb",
                "generate",
                "--start",
                "2026-11-23T00:00+01:00",
                "--hours",
                "2",
                "--rate",
                "300",
                "--json",
            ]
        )
        == 0
    )
    written = json.loads(capsys.readouterr().out)
    assert set(written) >= {"interactions", "party_segments", "malformed"}
    assert gim(["run", "Job_ExtractICON", "--local"]) == 0
    capsys.readouterr()
    assert gim(["etl", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["pending_transform"] >= written["party_segments"]
    assert status["facts"]["interaction_fact"] == 0
    assert gim(["run", "Job_TransformGIM", "--local"]) == 0
    capsys.readouterr()
    assert gim(["etl", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["pending_transform"] == 0
    assert status["facts"]["interaction_segment_fact"] == written["party_segments"] - count(
        gim_env["GIM_DATABASE_URL"],
        "SELECT count(*) FROM discard WHERE source_table = 'interaction_segment_fact'",
    )
    assert status["lag_seconds"] is not None
    assert gim(["run", "Job_UpdateStats", "--local"]) == 1  # M7: not run by hand
    assert "is not run manually" in capsys.readouterr().out


def test_d1_tables_extracted_and_transformed_in_parallel_give_the_same_facts(
    idb_url: str, make_database: Callable[..., str]
) -> None:
    # parallel-tables: one table at a time, or four, each in its own connections reading as of
    # the one exported snapshot; small batches so that tables interleave.
    with psycopg.connect(idb_url, autocommit=True) as conn:
        generate(conn, START, 4, agents=20, queues=4, rate=2000, seed=21)
    marts = {parallel: make_database() for parallel in (1, 4)}
    for parallel, url in marts.items():
        cycle(url, [idb_url], batch=300, parallel=parallel)
    with psycopg.connect(idb_url, autocommit=True) as conn:  # late updates, then a new cycle
        conn.execute(
            "UPDATE party_segment SET outcome = 'abandoned', agent_id = NULL "
            "WHERE id IN (SELECT id FROM party_segment ORDER BY id DESC LIMIT 50)"
        )
        generate(conn, START + timedelta(hours=4), 1, agents=20, queues=4, rate=600, seed=22)
    for parallel, url in marts.items():
        cycle(url, [idb_url], batch=300, parallel=parallel)
    assert facts(marts[1]) == facts(marts[4])
    assert count(marts[4], "SELECT count(*) FROM interaction_segment_fact") > 3 * 300
    assert count(marts[4], "SELECT count(*) FROM agg_pending") == count(
        marts[1], "SELECT count(*) FROM agg_pending"
    )


def test_d1_parallel_readers_read_as_of_the_one_snapshot(idb_url: str, database_url: str) -> None:
    # A row committed after the extraction's snapshot S belongs to the next extraction, even
    # when the connection that reads its table starts later: readers import S.
    with psycopg.connect(idb_url, autocommit=True) as conn:
        generate(conn, START, 2, agents=10, queues=2, rate=1000, seed=23)
    ctx = JobContext(
        mart=make_engine(database_url), idb_urls=[idb_url], options=options(200, parallel=2)
    )
    late: list[int] = []

    def write_after_first_batch(what: str, done: int, total: int | None) -> None:
        # Configuration is extracted first, on the snapshot's own connection; the traffic
        # tables are read afterwards by connections that import S. A call that commits now,
        # before any of them starts, is after S all the same.
        if not late:
            with psycopg.connect(idb_url, autocommit=True) as conn:
                row = conn.execute(
                    "INSERT INTO interaction (media_type_id, direction, customer_segment_id, "
                    "service_type_id, created_at, status) SELECT media_type_id, direction, "
                    "customer_segment_id, service_type_id, now(), status FROM interaction "
                    "LIMIT 1 RETURNING id"
                ).fetchone()
            assert row is not None and "interaction" not in what
            late.append(int(row[0]))

    ctx.progress = write_after_first_batch
    extract.run(ctx)
    query = f"SELECT count(*) FROM stg_interaction WHERE id = {late[0]}"
    assert count(database_url, query) == 0
    cycle(database_url, [idb_url])
    assert count(database_url, query) == 1


def test_m6_cooperative_stop_between_batches_keeps_committed_work(
    idb_url: str, database_url: str, make_database: Callable[..., str]
) -> None:
    from gim_tasks.jobs.base import StopRequested

    with psycopg.connect(idb_url, autocommit=True) as conn:
        generate(conn, START, 3, agents=20, queues=4, rate=2000, seed=11)
    engine = make_engine(database_url)
    ctx = JobContext(mart=engine, idb_urls=[idb_url], options=options(batch=200))
    batches: list[int] = []

    def stop_after_three(what: str, done: int, total: int | None) -> None:
        batches.append(done)
        if len(batches) == 3:
            ctx.stop.request("stopped by test")

    ctx.progress = stop_after_three
    with pytest.raises(StopRequested, match="stopped by test"):
        extract.run(ctx)
    staged = count(database_url, "SELECT count(*) FROM stg_party_segment") + count(
        database_url, "SELECT count(*) FROM stg_interaction"
    )
    # Committed batches stay. Tables are extracted `parallel-tables` at a time: the others
    # each end the batch they are in, so up to parallel - 1 batches more than the three.
    parallel = int(ctx.options.get("gim-etl", "parallel-tables"))
    assert parallel == 2
    assert 0 < ctx.counts.read <= (3 + parallel - 1) * 200 and staged <= ctx.counts.read
    cycle(database_url, [idb_url])  # the next run continues
    reference = make_database()
    cycle(reference, [idb_url])
    assert facts(database_url) == facts(reference)


def test_m2_transform_started_while_extract_runs_loads_only_what_extract_committed(
    idb_url: str, database_url: str, make_database: Callable[..., str]
) -> None:
    """M2: a Transform started while Extract is mid-way completes at once with what Extract
    committed so far: here every interaction and segment (with their queues and agents:
    configuration is extracted first), none of the campaign attempts Extract is held on. The
    next Transform after Extract finishes brings the facts to a clean load's (D1). Extract is
    held mid-way by a table lock on the staging table it writes last, not by timing."""
    with psycopg.connect(idb_url, autocommit=True) as conn:
        generate(conn, START + timedelta(hours=8), 2, agents=40, queues=5, rate=2000, seed=12)
    engine = make_engine(database_url)
    holder = psycopg.connect(database_url)
    holder.execute("LOCK TABLE stg_campaign_attempt IN SHARE ROW EXCLUSIVE MODE")  # no INSERT
    extracting = threading.Thread(
        target=extract.run,
        args=(JobContext(mart=engine, idb_urls=[idb_url], options=options(parallel=1)),),
    )
    extracting.start()
    try:
        deadline = time.monotonic() + 60
        while not count(
            database_url,
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
            "'stg_campaign_attempt'::regclass",
        ):
            assert time.monotonic() < deadline and extracting.is_alive(), "Extract not held"
            time.sleep(0.05)
        transform.run(JobContext(mart=engine, idb_urls=[idb_url], options=options()))
        held = extracting.is_alive()
        segments = count(database_url, "SELECT count(*) FROM interaction_segment_fact")
        segment_discards = count(
            database_url,
            "SELECT count(*) FROM discard WHERE source_table = 'interaction_segment_fact'",
        )
        attempts = count(database_url, "SELECT count(*) FROM campaign_attempt_fact")
    finally:
        holder.rollback()
        holder.close()
        extracting.join()
    assert held
    total = count(idb_url, "SELECT count(*) FROM party_segment")
    assert segments + segment_discards == total > 0  # every committed segment, loaded once
    assert attempts == 0 < count(idb_url, "SELECT count(*) FROM campaign_attempt")
    transform.run(JobContext(mart=engine, idb_urls=[idb_url], options=options()))
    reference = make_database()
    cycle(reference, [idb_url])
    assert facts(database_url) == facts(reference)
    # None discarded for a queue or agent not yet extracted: the clean load's discards only.
    assert segment_discards == count(
        reference, "SELECT count(*) FROM discard WHERE source_table = 'interaction_segment_fact'"
    )
