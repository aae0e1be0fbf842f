"""The distributed runtime with real processes: Celery workers, RedBeat beats, PostgreSQL and
Redis (SPEC S1-S3, S11, R2, M1, M5-M7)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import redis
import sqlalchemy as sa
from conftest import CELERY, Stack

from gim_tasks.db.engine import make_engine
from gim_tasks.idb.generator import generate
from gim_tasks.monitor import notify
from gim_tasks.options import store
from gim_tasks.runtime.state import BEAT_KEY
from gim_tasks.schedule.jobs import AGGREGATE
from gim_tasks.web.views import summary


def test_m1_manual_run_on_a_worker_and_s2_and_m7(stack: Stack) -> None:
    stack.worker()
    result = stack.gim("run", "Job_ExtractICON", "--wait", "--actor", "alice")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Completed" in result.stdout
    run = stack.runs("job = 'Job_ExtractICON'")[-1]
    assert (run.state, run.trigger, run.actor) == ("Completed", "manual", "alice")
    assert run.rows_read > 1000 and run.fencing_token is not None
    # S2: while a run of the job is Running, another start is Rejected with the reason.
    with stack.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO job_run (job, trigger, actor, state, started_at, "
                "heartbeat_at) VALUES ('Job_TransformGIM', 'manual', 'bob', "
                "'Running', now(), now())"
            )
        )
    rejected = stack.gim("run", "Job_TransformGIM")
    assert rejected.returncode == 1 and "Rejected: already running as run" in rejected.stdout
    # M7: not run by hand unless forced by an admin.
    refused = stack.gim("run", "Job_UpdateStats")
    assert refused.returncode == 1 and "update-stats-schedule" in refused.stdout
    forced = stack.gim("run", "Job_UpdateStats", "--force", "--wait")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert stack.runs("job = 'Job_UpdateStats' AND state = 'Completed'")[0].forced is True


def test_celery_call_obeys_the_same_rules(stack: Stack) -> None:
    stack.worker()
    subprocess.run(
        [CELERY, "-A", "gim_tasks.runtime.celery_app", "call", "Job_ExtractICON",
         "--kwargs", '{"actor": "alice"}'],
        env=stack.env,
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    stack.wait(
        lambda: any(r.state == "Completed" for r in stack.runs("actor = 'alice'")),
        60,
        "celery call run completed",
    )
    subprocess.run(
        [CELERY, "-A", "gim_tasks.runtime.celery_app", "call", "Job_UpdateStats"],
        env=stack.env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    stack.wait(
        lambda: any(
            r.state == "Rejected" and "(M7)" in r.reason
            for r in stack.runs("job = 'Job_UpdateStats'")
        ),
        60,
        "celery call of UpdateStats rejected",
    )
    assert {r.actor for r in stack.runs("job = 'Job_UpdateStats'")} == {"celery (unnamed)"}
    with stack.engine.connect() as conn:  # P6: both audited as sent through Celery
        audited = conn.execute(
            sa.text(
                "SELECT actor, channel, target FROM audit_event WHERE action = 'run' ORDER BY id"
            )
        ).all()
    assert [tuple(a) for a in audited] == [
        ("alice", "celery", "Job_ExtractICON"),
        ("celery (unnamed)", "celery", "Job_UpdateStats"),
    ]
    typo = subprocess.run(
        [CELERY, "-A", "gim_tasks.runtime.celery_app", "call", "Job_ExtractIcon"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert typo.returncode == 2
    assert "Error: unknown job 'Job_ExtractIcon'; jobs are Job_AggregateGIM" in typo.stderr
    assert "Traceback" not in typo.stderr


def test_m5_manual_maintenance_waits_then_cancel(stack: Stack) -> None:
    with stack.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO job_run (job, trigger, actor, state, started_at, "
                "heartbeat_at) VALUES ('Job_ExtractICON', 'scheduled', "
                "'scheduler', 'Running', now(), now())"
            )
        )
    result = stack.gim("run", "Job_MaintainGIM", "--actor", "carol")
    assert result.returncode == 0
    assert "Scheduled: waiting for Job_ExtractICON run" in result.stdout
    run_id = stack.runs("job = 'Job_MaintainGIM'")[0].id
    listed = stack.gim("jobs", "--scheduled", "--json")
    assert f'"id": {run_id}' in listed.stdout
    cancelled = stack.gim("cancel", str(run_id), "--actor", "carol")
    assert cancelled.returncode == 0 and "Cancelled" in cancelled.stdout
    run = stack.runs(f"id = {run_id}")[0]
    assert (run.state, run.ended_by) == ("Cancelled", "carol")


def test_m6_stop_a_running_run(stack: Stack) -> None:
    with psycopg.connect(stack.env["GIM_IDB_URLS"], autocommit=True) as conn:
        generate(
            conn, datetime(2026, 11, 24, tzinfo=UTC), 24, agents=30, queues=5, rate=8000, seed=2
        )
    with stack.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO option_value VALUES ('gim-etl', 'extract-batch-size',"
                " '100', 'test', now())"
            )
        )
    stack.worker()
    started = stack.gim("run", "Job_ExtractICON")
    assert started.returncode == 0
    run_id = stack.runs("job = 'Job_ExtractICON'")[0].id
    stack.wait(lambda: stack.runs(f"id = {run_id}")[0].state == "Running", 60, "running")
    stopped = stack.gim("stop", str(run_id), "--actor", "dave")
    assert "stop requested" in stopped.stdout
    stack.wait(lambda: stack.runs(f"id = {run_id}")[0].state == "Stopped", 60, "stopped")
    run = stack.runs(f"id = {run_id}")[0]
    assert run.ended_by == "dave" and run.reason == "stopped by dave"
    assert 0 < run.rows_read


def test_s1_s3_s11_two_beats_run_cycles_once_each_and_r2_worker_lost(stack: Stack) -> None:
    with stack.engine.begin() as conn:
        for option, value in (
            ("etl-start-time", "00:00"),
            ("etl-end-time", "00:00"),
            ("etl-frequency", "1"),
            ("run-update-stats", "false"),
            ("run-maintain", "false"),
        ):
            conn.execute(
                sa.text("INSERT INTO option_value VALUES ('schedule', :o, :v, 'test', now())"),
                {"o": option, "v": value},
            )
    stack.worker()
    stack.start("beat1", "beat")
    stack.start("beat2", "beat")

    def cycles_done() -> int:
        return len(
            stack.runs(
                "job = 'Job_TransformGIM' AND trigger = 'scheduled' AND state LIKE 'Completed%'"
            )
        )

    # A fresh scheduler starts one cycle at once (S12), then one per minute (S1).
    stack.wait(lambda: cycles_done() >= 2, 150, "two scheduled cycles")
    extracts = stack.runs("job = 'Job_ExtractICON' AND trigger = 'scheduled'")
    planned = [r.planned_at for r in extracts if r.state != "Rejected"]
    assert len(planned) == len(set(planned))  # S11: every firing started once
    for run in stack.runs("job = 'Job_TransformGIM' AND trigger = 'scheduled'"):
        extract = [r for r in extracts if r.planned_at == run.planned_at][0]
        assert extract.ended_at <= run.started_at  # S3: Transform after Extract
    # S1: every minute slot has exactly one firing row (started, held, or skipped as the rules
    # require), on the grid and one minute apart; none missing, none twice.
    every = sorted(r.planned_at for r in extracts)
    assert all(at.second == 0 and at.microsecond == 0 for at in every), every
    assert all(b - a == timedelta(minutes=1) for a, b in zip(every, every[1:], strict=False)), every

    # R2: a worker killed mid-run leaves no run Running: it ends Failed (worker lost).
    with stack.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE option_value SET value = 'false' WHERE name = 'run-scheduler'")
        )
        conn.execute(
            sa.text(
                "INSERT INTO option_value VALUES ('schedule', 'run-scheduler', "
                "'false', 'test', now()) ON CONFLICT DO NOTHING"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO job_run (job, trigger, actor, state, started_at, "
                "heartbeat_at, fencing_token) VALUES ('Job_MaintainGIM', "
                "'manual', 'ghost', 'Running', now(), now() - interval '1 hour', "
                "nextval('fencing_seq'))"
            )
        )
    stack.wait(
        lambda: stack.runs("actor = 'ghost'")[0].state == "Failed", 30, "lost run marked Failed"
    )
    assert "worker lost" in stack.runs("actor = 'ghost'")[0].error


def test_r2_worker_killed_mid_run_ends_failed_and_next_run_completes_exactly(
    stack: Stack, make_database: Callable[..., str]
) -> None:
    from gim_tasks.jobs import extract, transform
    from gim_tasks.jobs.base import JobContext
    from gim_tasks.options.values import Options

    stack.env.update({"GIM_HEARTBEAT_SECONDS": "1", "GIM_LEASE_SECONDS": "4"})
    with psycopg.connect(stack.env["GIM_IDB_URLS"], autocommit=True) as conn:
        generate(
            conn, datetime(2026, 11, 24, tzinfo=UTC), 24, agents=30, queues=5, rate=8000, seed=4
        )
    with stack.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO option_value VALUES ('gim-etl', 'extract-batch-size',"
                " '100', 'test', now())"
            )
        )
    stack.start("beat", "beat")  # sweeps lost runs (R2); run-scheduler off: launches nothing
    with stack.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO option_value VALUES ('schedule', 'run-scheduler', "
                "'false', 'test', now())"
            )
        )
    worker = stack.worker("doomed")
    assert stack.gim("run", "Job_ExtractICON").returncode == 0
    run_id = stack.runs("job = 'Job_ExtractICON'")[0].id
    stack.wait(lambda: stack.runs(f"id = {run_id}")[0].rows_read > 0, 60, "run progressing")
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool, mid-run
    stack.wait(lambda: stack.runs(f"id = {run_id}")[0].state == "Failed", 30, "run Failed")
    lost = stack.runs(f"id = {run_id}")[0]
    assert "worker lost" in lost.error
    # Declared lost only once its lease (4 s) had run out since the last heartbeat, never
    # before (was: "within 14 s of the kill", a timing assertion that flaked on a busy VM;
    # the wait above bounds how late).
    assert (lost.ended_at - lost.heartbeat_at).total_seconds() >= 4
    stack.worker("w2")
    for job in ("Job_ExtractICON", "Job_TransformGIM"):
        result = stack.gim("run", job, "--wait", timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
    reference = make_database()
    engine = make_engine(reference)
    for body in (extract.run, transform.run):
        body(
            JobContext(
                mart=engine, idb_urls=[stack.env["GIM_IDB_URLS"]], options=Options.defaults()
            )
        )
    query = (
        "SELECT count(*), md5(string_agg(segment_id::text || end_ts::text, ',' ORDER BY "
        "segment_id)) FROM interaction_segment_fact"
    )
    with stack.engine.connect() as a, engine.connect() as b:
        assert a.execute(sa.text(query)).one() == b.execute(sa.text(query)).one()  # D1
    engine.dispose()


def test_worker_sigterm_stops_a_continuous_run_gracefully(stack: Stack) -> None:
    stack.env.update({"GIM_HEARTBEAT_SECONDS": "1"})
    worker = stack.worker("graceful")
    result = stack.gim("run", "Job_AggregateGIM")  # run-aggregates=false: runs until stopped
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = stack.runs("job = 'Job_AggregateGIM'")[0].id
    stack.wait(lambda: stack.runs(f"id = {run_id}")[0].state == "Running", 60, "running")
    worker.send_signal(signal.SIGTERM)  # warm shutdown of the main process only
    stack.wait(lambda: stack.runs(f"id = {run_id}")[0].state == "Stopped", 40, "stopped")
    assert stack.runs(f"id = {run_id}")[0].reason == "worker shutting down"
    assert worker.wait(timeout=40) is not None


def test_s7_aggregation_window_restarts_a_stopped_run_and_stops_at_window_end(
    stack: Stack,
) -> None:
    """S7 with real processes: inside an open window the beat starts aggregation, starts it
    again within a tick after an operator stopped it (M6 warns that it would), and stops it
    gracefully when the window ends."""
    for option, value in (
        ("run-aggregates", "false"),  # opened below, once the processes are up
        ("run-maintain", "false"),
        ("run-update-stats", "false"),
        ("etl-start-time", "05:00"),  # no ETL cycle in this test's minutes
        ("etl-end-time", "05:01"),
    ):
        store.set_option(stack.engine, "schedule", option, value, "test")
    # R4, A3: error subscribers hear of the operator's stop, not of the window's end.
    notify.add_subscription(stack.engine, AGGREGATE, "errors@example.com", False, True, "test")
    stack.env["GIM_HEARTBEAT_SECONDS"] = "1"
    stack.worker()
    stack.start("beat1", "beat")
    # Synchronise on what the processes say, not on how long a loaded machine takes to boot
    # them (issue 32): the worker is ready and the beat has ticked.
    client = redis.Redis.from_url(stack.env["GIM_REDIS_URL"])
    stack.wait(lambda: " ready." in (stack.tmp / "w1.log").read_text(), 90, "the worker ready")
    stack.wait(lambda: bool(client.hget(BEAT_KEY, "tick")), 90, "the beat's first tick")
    # Then a window open now that ends at least 75 s from now: time for the start, the stop
    # and the restart, each synchronised on the rows below.
    now = datetime.now(UTC)
    opening = now.replace(second=0, microsecond=0)
    minutes = 2 if now.second < 45 else 3
    window_end = opening + timedelta(minutes=minutes)
    for option, value in (
        ("aggregate-schedule", f"{opening.minute} {opening.hour}"),
        ("aggregate-duration", f"00:0{minutes}"),
        ("run-aggregates", "true"),
    ):
        store.set_option(stack.engine, "schedule", option, value, "test")

    def running(trigger: str) -> list[sa.Row]:
        return stack.runs(
            f"job = 'Job_AggregateGIM' AND state = 'Running' AND trigger = '{trigger}'"
        )

    stack.wait(lambda: bool(running("scheduled")), 30, "aggregation started in its window")
    first = running("scheduled")[0]
    stop = stack.gim("stop", str(first.id), "--actor", "ops")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "restarts" in stop.stdout  # M6: the operator is told the scheduler restarts it
    stack.wait(lambda: bool(running("restart")), 30, "aggregation restarted (S7)")
    assert stack.runs(f"id = {first.id}")[0].state == "Stopped"
    restarted = running("restart")[0]
    limit = (window_end - datetime.now(UTC)).total_seconds() + 30
    stack.wait(
        lambda: stack.runs(f"id = {restarted.id}")[0].state == "Stopped", limit, "window end"
    )
    ended = stack.runs(f"id = {restarted.id}")[0]
    assert ended.reason == "aggregation window ended (S7)"
    assert ended.ended_at >= window_end
    assert not running("restart") and not running("scheduled")
    # R4: the window's end is a planned stop: a success, no error mail; the operator's stop
    # is neither success nor failure and goes to error subscribers.
    assert ended.stop_kind == "window-end"
    with stack.engine.connect() as conn:
        mailed = dict(
            conn.execute(sa.text("SELECT run_id, count(*) FROM notification GROUP BY run_id")).all()
        )
    assert mailed == {first.id: 1}
    (aggregation,) = [
        c for c in summary(stack.engine, 1)["categories"] if c["category"] == "Aggregation"
    ]
    assert aggregation["failures"] == 0 and aggregation["runs"] >= 2


def test_m6_a_run_that_ignores_its_stop_is_revoked_and_its_process_ends(stack: Stack) -> None:
    """M6 (issue 32): a body that does not honour its stop (stuck in a statement, behind a lock
    a test holds) is revoked with terminate by the beat once the grace has passed: the worker
    receives the revoke, the pool process that ran it ends, and the stop is `terminated`."""
    with stack.engine.begin() as conn:  # the beat launches nothing of its own
        conn.execute(
            sa.text(
                "INSERT INTO option_value VALUES ('schedule', 'run-scheduler', 'false', 'test', "
                "now())"
            )
        )
    blocker = psycopg.connect(stack.env["GIM_IDB_URLS"])
    try:
        # Extract's first read of the IDB waits behind this lock, never checking its stop.
        from gim_tasks.idb.schema import TABLES

        names = ", ".join(table.name for table in TABLES)
        blocker.execute(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
        stack.worker()
        assert stack.gim("run", "Job_ExtractICON").returncode == 0
        (run,) = stack.runs("job = 'Job_ExtractICON'")
        stack.wait(lambda: stack.runs(f"id = {run.id}")[0].state == "Running", 60, "running")

        def waiting_on_the_lock() -> bool:
            with psycopg.connect(stack.env["GIM_IDB_URLS"]) as probe:
                row = probe.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                ).fetchone()
                return bool(row and row[0])

        stack.wait(waiting_on_the_lock, 60, "the run blocked in its read")
        running = stack.runs(f"id = {run.id}")[0]
        pid = int(running.worker.rsplit(":", 1)[1])
        assert os.path.exists(f"/proc/{pid}")
        assert "stop requested" in stack.gim("stop", str(run.id), "--actor", "dave").stdout
        # The grace (60 s) is over: as if the stop had been asked 61 s ago.
        with stack.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE job_run SET stop_requested_at = now() - interval '61 s' WHERE id = :i"
                ),
                {"i": run.id},
            )
        stack.start("beat", "beat")

        def process_ended() -> bool:
            try:
                state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                return True
            return state == "Z"

        stack.wait(process_ended, 60, f"the pool process {pid} that ran the run ends")
        worker_log = (stack.tmp / "w1.log").read_text()
        assert f"Terminating {running.task_id}" in worker_log, worker_log[-2000:]
        stack.wait(lambda: stack.runs(f"id = {run.id}")[0].state != "Running", 120, "ended")
        ended = stack.runs(f"id = {run.id}")[0]
        assert ended.stop_kind == "terminated" and ended.state in ("Stopped", "Failed")
    finally:
        blocker.close()


def test_l1_l3_a_sigstopped_run_ends_at_its_time_limit_and_a_sigkilled_one_is_retried(
    stack: Stack,
) -> None:
    """L1 with a frozen worker (SIGSTOP: no heartbeat, no cooperative stop, no revoke can
    reach it): the beat's stop request makes the run Stopped ``time-limit`` once its lease
    runs out, within limit + grace + 60 s. L3: a worker SIGKILLed mid-maintenance is retried
    once by the beat and the retry succeeds; one letter, on the final outcome. Maintenance is
    held mid-run by the test holding the advisory lock its second step takes."""
    from gim_tasks.db import locks

    stack.env.update({"GIM_HEARTBEAT_SECONDS": "1", "GIM_LEASE_SECONDS": "20"})
    for section, name, value in (
        ("schedule", "run-scheduler", "false"),  # no firings: only what the test starts
        ("limits", "max-runtime", "Job_MaintainGIM=10s:stop"),
    ):
        store.set_option(stack.engine, section, name, value, "test")
    notify.add_subscription(stack.engine, "Job_MaintainGIM", "ops@example.com", True, True, "t")
    stack.start("beat", "beat")
    holder = stack.engine.connect()
    locks.hold_session(holder, locks.PARTITIONS)  # maintenance's partitions step waits on it
    holder.commit()

    def running_maintenance() -> list[sa.Row]:
        return stack.runs("job = 'Job_MaintainGIM' AND state = 'Running'")

    try:
        frozen = stack.worker("frozen")
        assert stack.gim("run", "Job_MaintainGIM").returncode == 0
        stack.wait(lambda: bool(running_maintenance()), 60, "maintenance running")
        first = running_maintenance()[0]
        os.killpg(frozen.pid, signal.SIGSTOP)  # the worker and its pool, frozen
        stack.wait(
            lambda: stack.runs(f"id = {first.id}")[0].state == "Stopped", 10 + 60 + 60, "L1 stop"
        )
        stopped = stack.runs(f"id = {first.id}")[0]
        assert (stopped.stop_kind, stopped.ended_by) == ("time-limit", "gim-tasks")
        assert "past its limit of 0m10s" in stopped.reason
        os.killpg(frozen.pid, signal.SIGKILL)

        # L3: retries on, no limit; the worker dies (SIGKILL) while maintenance waits.
        store.set_option(stack.engine, "limits", "retries", "Job_MaintainGIM=1", "test")
        store.set_option(stack.engine, "limits", "retry-delay-seconds", "5", "test")
        store.unset_option(stack.engine, "limits", "max-runtime", "test")
        doomed = stack.worker("doomed")
        assert stack.gim("run", "Job_MaintainGIM").returncode == 0
        stack.wait(lambda: bool(running_maintenance()), 60, "maintenance running again")
        lost = running_maintenance()[0]
        assert lost.max_attempts == 2
        os.killpg(doomed.pid, signal.SIGKILL)
        stack.wait(
            lambda: stack.runs(f"id = {lost.id}")[0].state == "Failed", 60, "worker lost (R2)"
        )
    finally:
        locks.release_session(holder, locks.PARTITIONS)
        holder.close()
    stack.worker("w2")
    stack.wait(
        lambda: any(r.state == "Completed" for r in stack.runs(f"retry_of = {lost.id}")),
        90,
        "the retry completed",
    )
    retried = stack.runs(f"id = {lost.id}")[0]
    second = stack.runs(f"retry_of = {lost.id}")[0]
    assert "worker lost" in retried.error and retried.retry == "retried"
    assert (second.attempt, second.trigger, second.firing_id) == (2, "retry", f"retry:{lost.id}#2")
    with stack.engine.connect() as conn:
        letters = dict(
            conn.execute(sa.text("SELECT run_id, count(*) FROM notification GROUP BY run_id")).all()
        )
    # The time-limited run's failure letter, the retried attempt none, its retry's success one.
    assert letters == {first.id: 1, second.id: 1}
