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
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from gim_tasks.cli.main import main as gim
from gim_tasks.db.engine import make_engine
from gim_tasks.runtime import tasks
from gim_tasks.runtime.beat import sweep_abandoned_waits, sweep_lost
from gim_tasks.settings import get_settings
from gim_tasks.web import auth
from gim_tasks.web.app import create_app

GIM = str(Path(sys.executable).with_name("gim"))
LEASE = 2.0  # the sweeps below use it; the runs heartbeat every 0.3 s


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


def via_cli(job: str) -> str:
    code = gim(["run", job])
    assert code == 1
    return rows_text()


def rows_text() -> str:
    engine = make_engine(get_settings().database_url)
    last = rows(engine)[-1]
    engine.dispose()
    return f"{last.state}: {last.reason}"


def via_local(job: str) -> str:
    assert gim(["run", job, "--local"]) == 1
    return rows_text()


def via_aggregate_once(job: str) -> str:
    assert gim(["aggregate", "once"]) == 1
    return rows_text()


def via_api(job: str) -> str:
    engine = make_engine(get_settings().database_url)
    auth.add_user(engine, "ops", "operator", "correct horse 1", "test")
    token = auth.create_token(engine, "ops")
    client = TestClient(create_app(get_settings(), engine), base_url="http://testserver")
    reply = client.post(
        "/api/runs", json={"job": job}, headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code == 409, reply.text
    return f"{reply.json()['state']}: {reply.json()['reason']}"


def via_celery_call(job: str) -> str:
    reply = tasks.run_job(job, task_id=None)  # what a raw `celery call Job_X` executes
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
    """`gim run JOB --local` in its own process, heartbeating every 0.3 s (lease 2 s)."""
    return subprocess.Popen(
        [GIM, "run", job, "--local"],
        env={**os.environ, **gim_env, "GIM_HEARTBEAT_SECONDS": "0.3", "GIM_LEASE_SECONDS": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_m0_r2_local_run_holds_its_lease_then_sigterm_ends_it_stopped(
    gim_env: dict[str, str],
) -> None:
    """A continuous in-process aggregation outlives three leases while the sweeps run and is
    never taken for a lost worker; `timeout -s TERM` (a container stop) ends it Stopped, kind
    shutdown, within seconds."""
    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    process = start_local(gim_env, "Job_AggregateGIM")
    try:
        wait_for(lambda: bool(rows(engine, "state = 'Running'")), 60, "the local run to start")
        (run,) = rows(engine, "state = 'Running'")
        assert run.in_process and run.fencing_token is not None and run.task_id is None
        held_until = time.monotonic() + 3.5 * LEASE
        while time.monotonic() < held_until:
            assert sweep_lost(engine, lease=LEASE) == []
            time.sleep(0.2)
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
        time.sleep(3 * 0.3 + 2.5)  # several polls: it must keep waiting
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
