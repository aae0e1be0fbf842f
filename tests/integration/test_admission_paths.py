"""M0 with real servers: every manual path goes through the one admission decision, and an
in-process run is a real run (lease, heartbeat, stop on signals, waits instead of breaching).

Each path is shown refusing by a rule the old side doors skipped; the pure table of every rule
on every path is ``tests/unit/test_admission.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from gim_tasks.cli.main import main as gim
from gim_tasks.db.engine import make_engine
from gim_tasks.jobs.base import JobContext
from gim_tasks.runtime import tasks
from gim_tasks.runtime.runs import sweep_abandoned_waits, sweep_lost
from gim_tasks.settings import get_settings
from gim_tasks.web import auth
from gim_tasks.web.app import create_app

GIM = str(Path(sys.executable).with_name("gim"))
#: The lease the sweeps below use; the runs heartbeat every 0.3 s: a heartbeat may come 16
#: intervals late on a loaded machine before a sweep would call the run lost (issue 32).
LEASE = 5.0


def rows(engine: sa.Engine, where: str = "true") -> list[sa.Row[Any]]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(f"SELECT * FROM job_run WHERE {where} ORDER BY id")))


def wait_for(predicate: Callable[[], bool], limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {limit} s waiting for {what}")


def empty_calendar(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM date_time"))


def with_params(argv: list[str], params: str) -> list[str]:
    return argv + ["--params", params] if params else argv


def via_cli(job: str, params: str = "") -> str:
    code = gim(with_params(["run", job], params))
    assert code == 1
    return rows_text()


def rows_text() -> str:
    engine = make_engine(get_settings().database_url)
    last = rows(engine)[-1]
    engine.dispose()
    return f"{last.state}: {last.reason}"


def via_local(job: str, params: str = "") -> str:
    assert gim(with_params(["run", job, "--local"], params)) == 1
    return rows_text()


def via_aggregate_once(job: str, params: str = "") -> str:
    assert gim(with_params(["aggregate", "once"], params)) == 1
    return rows_text()


def via_api(job: str, params: str = "") -> str:
    engine = make_engine(get_settings().database_url)
    if not auth.list_users(engine):
        auth.add_user(engine, "ops", "operator", "correct horse 1", "test")
    token = auth.create_token(engine, "ops", actor="test")
    client = TestClient(create_app(get_settings(), engine), base_url="http://testserver")
    body = {"job": job} | ({"params": params} if params else {})
    reply = client.post("/api/runs", json=body, headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 409, reply.text
    return f"{reply.json()['state']}: {reply.json()['reason']}"


def via_celery_call(job: str, params: str = "") -> str:
    reply = tasks.run_job(job, task_id=None, params=params or None)  # a raw `celery call`
    return f"{reply['state']}: {reply['reason']}"


PATHS = {
    "gim run": via_cli,
    "gim run --local": via_local,
    "gim aggregate once": via_aggregate_once,
    "api": via_api,
    "celery call": via_celery_call,
}


@pytest.mark.parametrize("path", list(PATHS))
def test_m0_c2_every_path_refuses_while_the_calendar_is_short(
    gim_env: dict[str, str], path: str
) -> None:
    """C2 through M0: the calendar item (server-side, not an option error) blocks every path,
    naming the item; the refusal is recorded as a Rejected run (M1, M8)."""
    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    empty_calendar(engine)
    text = PATHS[path]("Job_AggregateGIM")
    assert text.startswith("Rejected: configuration check failed")
    assert "[gim-etl] date-time-min-days-ahead" in text and "(C2)" in text
    rejected = rows(engine, "state = 'Rejected'")
    assert len(rejected) == 1 and rejected[0].job == "Job_AggregateGIM"
    engine.dispose()


@pytest.mark.parametrize("path", list(PATHS))
def test_m0_m3_every_path_refuses_aggregation_outside_its_window(
    gim_env: dict[str, str], path: str
) -> None:
    """M3 was skipped by --local and aggregate once; now every path refuses."""
    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    hour = (time.gmtime().tm_hour + 12) % 24  # a one-minute window twelve hours away
    for name, value in (
        ("run-aggregates", "true"),
        ("aggregate-schedule", f"0 {hour}"),
        ("aggregate-duration", "00:01"),
    ):
        assert gim(["config", "set", "schedule", name, value]) == 0
    text = PATHS[path]("Job_AggregateGIM")
    assert text.startswith("Rejected: run-aggregates=true and no aggregation window is open")
    assert "(M3)" in text
    engine.dispose()


def test_c2_calendar_spares_maintenance_which_repairs_it(
    gim_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    empty_calendar(engine)
    assert gim(["run", "Job_MaintainGIM", "--local"]) == 0
    capsys.readouterr()
    assert gim(["config", "check"]) == 0
    assert "date-time-min-days-ahead" not in capsys.readouterr().out
    engine.dispose()


def test_c2_an_unreachable_idb_blocks_manual_runs_naming_it(
    gim_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GIM_IDB_URLS", "postgresql://nobody@127.0.0.1:9/idb")  # port 9: closed
    get_settings.cache_clear()
    assert gim(["run", "Job_TransformGIM", "--local"]) == 1
    out = capsys.readouterr().out
    assert "Rejected: configuration check failed" in out and "IDB 1" in out


def start_local(gim_env: dict[str, str], job: str) -> subprocess.Popen[str]:
    """`gim run JOB --local` in its own process, heartbeating every 0.3 s (lease LEASE)."""
    return subprocess.Popen(
        [GIM, "run", job, "--local"],
        env={
            **os.environ,
            **gim_env,
            "GIM_HEARTBEAT_SECONDS": "0.3",
            "GIM_LEASE_SECONDS": str(LEASE),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_m0_r2_local_run_holds_its_lease_then_sigterm_ends_it_stopped(
    gim_env: dict[str, str],
) -> None:
    """A continuous in-process aggregation heartbeats on while the sweeps run and is never
    taken for a lost worker; `timeout -s TERM` (a container stop) ends it Stopped, kind
    shutdown, within seconds. Synchronised on observed heartbeats, not on wall time."""
    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    process = start_local(gim_env, "Job_AggregateGIM")
    try:
        wait_for(lambda: bool(rows(engine, "state = 'Running'")), 60, "the local run to start")
        (run,) = rows(engine, "state = 'Running'")
        assert run.in_process and run.fencing_token is not None and run.task_id is None
        beats = {run.heartbeat_at}
        while len(beats) < 12:  # twelve heartbeats observed, a sweep after each poll
            assert sweep_lost(engine, lease=LEASE) == []
            beats.add(rows(engine, f"id = {run.id}")[0].heartbeat_at)
            time.sleep(0.1)
        assert rows(engine, f"id = {run.id}")[0].state == "Running"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 130
    finally:
        if process.poll() is None:
            process.kill()
    (ended,) = rows(engine, f"id = {run.id}")
    assert (ended.state, ended.stop_kind) == ("Stopped", "shutdown")
    assert "SIGTERM" in (ended.reason or "")
    engine.dispose()


def test_m6_gim_stop_stops_a_local_run_as_the_operator(
    gim_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    process = start_local(gim_env, "Job_AggregateGIM")
    try:
        wait_for(lambda: bool(rows(engine, "state = 'Running'")), 60, "the local run to start")
        (run,) = rows(engine, "state = 'Running'")
        assert gim(["stop", str(run.id), "--actor", "dana"]) == 0
        assert process.wait(timeout=15) == 130
    finally:
        if process.poll() is None:
            process.kill()
    (ended,) = rows(engine, f"id = {run.id}")
    assert (ended.state, ended.stop_kind, ended.ended_by) == ("Stopped", "operator", "dana")
    capsys.readouterr()
    assert gim(["jobs", "--json", "--job", "Job_AggregateGIM"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["stop_kind"], listed["in_process"]) == ("operator", True)
    engine.dispose()


def test_m5_s13_local_run_waits_for_maintenance_then_runs(gim_env: dict[str, str]) -> None:
    """A local Transform asked while maintenance runs waits (Scheduled, S13, saying so), never
    runs in breach, and starts by itself once maintenance has ended."""
    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    with engine.begin() as conn:
        maintenance = conn.execute(
            sa.text(
                "INSERT INTO job_run (job, trigger, actor, state, started_at, heartbeat_at) "
                "VALUES ('Job_MaintainGIM', 'manual', 'erin', 'Running', now(), now()) "
                "RETURNING id"
            )
        ).scalar_one()
    process = start_local(gim_env, "Job_TransformGIM")
    try:
        where = "job = 'Job_TransformGIM'"
        wait_for(lambda: bool(rows(engine, where)), 60, "the local request")
        beats = {rows(engine, where)[0].heartbeat_at}

        def polled_again() -> bool:  # each poll of the waiting request heartbeats
            beats.add(rows(engine, where)[0].heartbeat_at)
            return len(beats) >= 6

        wait_for(polled_again, 60, "five more polls of the waiting request")
        (waiting,) = rows(engine, where)
        assert waiting.state == "Scheduled" and waiting.in_process
        assert f"waiting for maintenance run {maintenance} (S13)" in waiting.reason
        assert waiting.started_at is None
        assert sweep_abandoned_waits(engine, lease=LEASE) == []  # it heartbeats while waiting
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE job_run SET state = 'Completed', ended_at = now() WHERE id = :i"),
                {"i": maintenance},
            )
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "waiting for maintenance run" in output
    (done,) = rows(engine, "job = 'Job_TransformGIM'")
    assert done.state == "Completed" and done.started_at is not None
    engine.dispose()


def test_r2_a_waiting_local_request_whose_process_died_is_cancelled(
    gim_env: dict[str, str],
) -> None:
    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO job_run (job, trigger, actor, state, started_at, heartbeat_at) "
                "VALUES ('Job_MaintainGIM', 'manual', 'erin', 'Running', now(), now())"
            )
        )
    process = start_local(gim_env, "Job_ExtractICON")
    where = "job = 'Job_ExtractICON' AND state = 'Scheduled'"
    wait_for(lambda: bool(rows(engine, where)), 60, "the waiting request")
    process.kill()
    process.wait()
    time.sleep(LEASE + 0.5)
    (lost,) = rows(engine, where)
    assert sweep_abandoned_waits(engine, lease=LEASE) == [lost.id]
    (cancelled,) = rows(engine, f"id = {lost.id}")
    assert cancelled.state == "Cancelled" and "waiting process is gone" in cancelled.reason
    engine.dispose()


# -- D5: re-aggregation that would destroy what it cannot rebuild, refused on every path --


def aggregates_fingerprint(engine: sa.Engine) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every aggregate table's rows."""
    from gim_tasks.aggregate.registry import HIERARCHIES, LEVELS

    with engine.connect() as conn:
        return {
            table: tuple(
                conn.execute(
                    sa.text(
                        f"SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY "
                        f"t::text)), '') FROM {table} t"
                    )
                ).one()
            )
            for table in (h.table(level) for h in HIERARCHIES for level in LEVELS)
        }


@pytest.fixture
def purged_mart(gim_env: dict[str, str], make_database: Callable[..., str]) -> date:
    """Thirty hours of traffic from 06:00 UTC on a day 20 days ago, loaded and aggregated;
    then days-to-keep-facts=19 and maintenance dropped that first day's partitions (the
    aggregates of every level stay: they are kept 800 days). Returns the purged day."""
    from gim_tasks.idb.generator import generate
    from gim_tasks.idb.schema import init_idb
    from gim_tasks.jobs import aggregate, extract, maintain, transform
    from gim_tasks.jobs.base import JobContext
    from gim_tasks.options import store

    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    idb = make_database(migrated=False)
    init_idb(make_engine(idb))
    purged = datetime.now(UTC).date() - timedelta(days=20)
    with psycopg.connect(idb, autocommit=True) as conn:
        start = datetime.combine(purged, dtime(6), UTC)
        generate(conn, start, 30, agents=8, queues=3, rate=120, seed=5)
    store.set_option(engine, "gim-etl", "days-to-keep-facts", "19", "test")
    with engine.connect() as conn:
        options = store.load_options(conn)
    for body in (extract.run, transform.run):
        body(JobContext(mart=engine, idb_urls=[idb], options=options))
    aggregate.run(JobContext(mart=engine, idb_urls=[], options=options), once=True)
    with engine.begin() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM agg_h_queue_subhour")).scalar_one()
        dropped = maintain.step_expired_partitions(
            JobContext(mart=engine, idb_urls=[], options=options), conn
        )
    assert before > 0 and len(dropped["dropped"]) == 6  # one day of each fact table
    engine.dispose()
    return purged


def process_queue(engine: sa.Engine) -> JobContext:
    from gim_tasks.jobs import aggregate
    from gim_tasks.jobs.base import JobContext
    from gim_tasks.options import store

    with engine.connect() as conn:
        options = store.load_options(conn)
    ctx = JobContext(mart=engine, idb_urls=[], options=options)
    aggregate.run(ctx, once=True)
    return ctx


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.date_sensitive
def test_d5_every_path_refuses_a_reaggregation_it_could_not_rebuild(
    purged_mart: date, gim_env: dict[str, str], path: str
) -> None:
    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    held = purged_mart + timedelta(days=1)
    far = datetime.now(UTC).date() + timedelta(days=400)  # beyond date-time-max-days-ahead
    before = aggregates_fingerprint(engine)
    cases = [
        (f"ALLSETS:{purged_mart}:{purged_mart}", f"needs the facts of {purged_mart}, which"),
        (f"H_QUEUE-SUBHOUR:{purged_mart}:{held}", f"needs the facts of {purged_mart}, which"),
        (f"H_AGENT-MONTH:{far}:{far}", "lies outside DATE_TIME, which holds"),
    ]
    for agr_set, words in cases:
        text = PATHS[path]("Job_AggregateGIM", f"-insertPendingAgg {agr_set}")
        assert text.startswith(f"Rejected: -insertPendingAgg range {agr_set.split(':', 1)[1]}")
        assert words in text and text.endswith("nothing was changed (D5)"), text
        if "facts" in words:
            assert f"the oldest day still held is {held}" in text
            assert "([gim-etl] days-to-keep-facts=19)" in text
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM agg_request")).scalar_one() == 0
    process_queue(engine)
    assert aggregates_fingerprint(engine) == before  # nothing deleted, nothing rewritten
    engine.dispose()


def queue_subhour_rows(conn: sa.Connection, day: date, damaged: bool = False) -> int:
    """H_QUEUE's SUBHOUR rows of a local day; ``damaged``: only those the test inflated."""
    return int(
        conn.execute(
            sa.text(
                "SELECT count(*) FROM agg_h_queue_subhour a JOIN date_time d USING "
                "(date_time_key) WHERE d.local_date = :d"
                + (" AND a.offered >= 1000" if damaged else "")
            ),
            {"d": day},
        ).scalar_one()
    )


@pytest.mark.date_sensitive
def test_d5_a_request_queued_before_the_purge_is_refused_when_taken(
    purged_mart: date, gim_env: dict[str, str]
) -> None:
    """A request waits in the queue for its window while maintenance purges: the aggregation
    job checks again when it takes it, records why, and deletes nothing. An interval Transform
    queued for a purged day is dropped, not rebuilt empty. A held range still rebuilds."""
    from gim_tasks.aggregate.params import parse

    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    before = aggregates_fingerprint(engine)
    held = purged_mart + timedelta(days=1)
    with engine.begin() as conn:
        for text in (
            f"-insertPendingAgg ALLSETS:{purged_mart}:{held}",
            f"-insertPendingAgg H_QUEUE-SUBHOUR:{held}:{held}",
        ):
            conn.execute(
                sa.text("INSERT INTO agg_request (params, requested_by) VALUES (:p, 'test')"),
                {"p": json.dumps(parse(text).as_dict())},
            )
        conn.execute(
            sa.text(
                "INSERT INTO agg_pending (fact, date_time_key) VALUES "
                "('interaction_segment_fact', :k)"
            ),
            {"k": int(datetime.combine(purged_mart, dtime(12), UTC).timestamp())},
        )
        conn.execute(sa.text("UPDATE agg_h_queue_subhour SET offered = offered + 1000"))
        damaged_held = queue_subhour_rows(conn, held)
    assert damaged_held > 0
    ctx = process_queue(engine)
    with engine.connect() as conn:
        requests = (
            conn.execute(sa.text("SELECT refused FROM agg_request ORDER BY id")).scalars().all()
        )
        pending = conn.execute(sa.text("SELECT count(*) FROM agg_pending")).scalar_one()
        old_days = queue_subhour_rows(conn, purged_mart, damaged=True)
    assert requests[0] is not None and f"needs the facts of {purged_mart}" in requests[0]
    assert requests[1] is None  # the held day was rebuilt
    assert pending == 0
    assert ctx.counts.summary["refused_requests"] == [f"request 1: {requests[0]}"]
    after = aggregates_fingerprint(engine)
    # The purged day's rows are exactly as they were before (damage included: D5 keeps what
    # it cannot rebuild); the held day's SUBHOUR rows were rebuilt from the facts.
    assert old_days > 0
    with engine.connect() as conn:
        wrong = queue_subhour_rows(conn, held, damaged=True)
    assert wrong == 0
    assert after["agg_h_agent_day"] == before["agg_h_agent_day"]  # not asked for: untouched
    engine.dispose()


def test_m0_celery_call_refuses_unknown_and_malformed_arguments(gim_env: dict[str, str]) -> None:
    """A raw task message (`celery call Job_X --kwargs …`, Flower) can carry anything: every
    argument but run_id, params and force is refused naming it, nothing recorded; the job is
    the task's own (a message cannot make Extract's task run maintenance)."""
    from gim_tasks.runtime.celery_app import create_app

    app = create_app(get_settings())
    extract_task = app.tasks["Job_ExtractICON"]
    cases: list[tuple[tuple[Any, ...], dict[str, Any], str]] = [
        ((), {"bogus": 1}, "unknown argument(s) bogus; a job task takes run_id, params, force"),
        ((), {"_job": "Job_MaintainGIM"}, "unknown argument(s) _job"),
        ((), {"run_id": "7"}, "run_id must be an integer, got '7'"),
        ((), {"run_id": True}, "run_id must be an integer"),
        ((), {"params": 5}, "params must be a string, got 5"),
        ((), {"force": "yes"}, "force must be true or false, got 'yes'"),
        ((7,), {}, "positional arguments are not accepted"),
    ]
    for args, kwargs, words in cases:
        reply = extract_task(*args, **kwargs)
        assert reply["state"] == "Rejected" and words in reply["reason"], (kwargs, reply)
    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    assert rows(engine) == []  # nothing recorded, nothing run
    reply = app.tasks["Job_ExportGIM"](force=True)  # a known argument, refused by its rule
    assert reply["state"] == "Rejected" and "force is refused in a task message" in reply["reason"]
    engine.dispose()
