"""The beat's tick through real PostgreSQL and a real Redis broker, at chosen instants:
S4, S5, S6, S11, S12, S13 as carried out (rows in job_run, messages on the queues)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from gim_tasks.db.engine import make_engine
from gim_tasks.options import store
from gim_tasks.runtime.beat import CURSORS_KEY
from gim_tasks.settings import get_settings
from tests.integration.beat_harness import Beat, at


@pytest.fixture
def beat(gim_env: dict[str, str]) -> Beat:
    return Beat(gim_env)


def test_s5_due_cycle_stops_scheduled_maintenance_then_starts(beat: Beat) -> None:
    maintenance = beat.run("Job_MaintainGIM", "scheduled")
    beat.cursors("2026-11-23 06:29:00")
    beat.tick("2026-11-23 06:30:01")
    stopped = [r for r in beat.rows("Job_MaintainGIM") if r.id == maintenance][0]
    assert stopped.stop_requested_at is not None and "(S5)" in stopped.reason
    held = beat.rows("Job_ExtractICON")
    assert [(r.state, r.dispatched_at) for r in held] == [("Scheduled", None)]
    assert beat.queued("etl") == 0
    beat.end(maintenance, "Stopped")
    beat.tick("2026-11-23 06:30:04")
    released = beat.rows("Job_ExtractICON")[0]
    assert released.dispatched_at is not None and beat.queued("etl") == 1


def test_s6_update_stats_skipped_while_scheduled_maintenance_runs(
    beat: Beat, capsys: pytest.CaptureFixture[str]
) -> None:
    beat.run("Job_MaintainGIM", "scheduled")
    beat.cursors("2026-11-23 03:05:00")
    beat.tick("2026-11-23 03:10:00")
    stats = beat.rows("Job_UpdateStats")
    assert [(r.state, "(S6)" in r.reason) for r in stats] == [("Rejected", True)]
    assert stats[0].firing_id == "Job_UpdateStats:2026-11-23T02:10:00+00:00"
    assert beat.queued("stats") == 0
    assert stats[0].skip == "rule"  # R4: expected, not a failure; no incident
    with beat.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM incident")).scalar_one() == 0
    # Out of `gim jobs`, listed by `gim jobs --skipped`.
    from gim_tasks.cli.main import main as gim

    capsys.readouterr()
    assert gim(["jobs", "--json", "--job", "Job_UpdateStats"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert gim(["jobs", "--json", "--skipped"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [stats[0].id]


def test_s4_maintenance_waits_for_transform_then_is_released(beat: Beat) -> None:
    transform = beat.run("Job_TransformGIM", "manual")
    beat.cursors("2026-11-23 02:59:00")
    beat.tick("2026-11-23 03:00:00")
    assert [r.state for r in beat.rows("Job_MaintainGIM")] == ["Scheduled"]
    assert beat.queued("maintenance") == 0
    beat.end(transform)
    beat.tick("2026-11-23 03:00:20")
    assert beat.rows("Job_MaintainGIM")[0].dispatched_at is not None
    assert beat.queued("maintenance") == 1


def test_s13_manual_maintenance_is_not_preempted_and_etl_waits(beat: Beat) -> None:
    maintenance = beat.run("Job_MaintainGIM", "manual")
    beat.cursors("2026-11-23 06:29:00")
    beat.tick("2026-11-23 06:30:01")
    assert [r for r in beat.rows("Job_MaintainGIM")][0].stop_requested_at is None
    held = beat.rows("Job_ExtractICON")
    assert [r.state for r in held] == ["Scheduled"] and "(S13)" in held[0].reason
    beat.end(maintenance)
    beat.tick("2026-11-23 06:30:09")
    assert beat.queued("etl") == 1


def test_s12_fresh_scheduler_runs_one_cycle_for_missed_slots(beat: Beat) -> None:
    beat.tick("2026-11-23 11:07:00")
    extracts = beat.rows("Job_ExtractICON")
    assert [(r.state, r.planned_at) for r in extracts] == [("Scheduled", at("2026-11-23 11:00:00"))]
    assert beat.queued("etl") == 1


def test_s11_two_beats_ticking_the_same_firing_send_it_once(
    beat: Beat, gim_env: dict[str, str]
) -> None:
    other = Beat(gim_env)
    beat.cursors("2026-11-23 09:59:00")
    beat.tick("2026-11-23 10:00:00")
    beat.redis.delete(CURSORS_KEY)  # the second beat has not seen the first one's cursors
    other.cursors("2026-11-23 09:59:00")
    other.tick("2026-11-23 10:00:00")
    assert len(beat.rows("Job_ExtractICON")) == 1
    assert beat.queued("etl") == 1


def test_s11_a_run_whose_message_was_lost_is_sent_again_once(gim_env: dict[str, str]) -> None:
    """A run sent to a worker but never started (message lost with a Redis restart) is sent
    again by the beat after RESEND_SECONDS; the resend is recorded, so the next tick waits."""
    from gim_tasks.runtime.runs import unclaimed

    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    with engine.begin() as conn:
        lost, fresh = (
            conn.execute(
                sa.text(
                    "INSERT INTO job_run (job, trigger, actor, state, dispatched_at) VALUES "
                    "('Job_ExtractICON', 'manual', 't', 'Scheduled', now() - :age) RETURNING id"
                ),
                {"age": age},
            ).scalar_one()
            for age in (timedelta(minutes=3), timedelta(seconds=5))
        )
    assert unclaimed(engine) == [(lost, "Job_ExtractICON")]
    assert unclaimed(engine) == []  # marked sent again just now
    assert fresh != lost
    engine.dispose()


def test_redbeat_entries_carry_each_jobs_next_run(gim_env: dict[str, str]) -> None:
    """Issue 9: RedBeat's schedule shows every active job at its Next Run; entries are
    disabled (RedBeat never sends them), inactive jobs have none."""
    from redbeat.schedulers import RedBeatSchedulerEntry

    from gim_tasks.runtime.beat import MIRROR_PREFIX

    beat = Beat(gim_env)
    beat.cursors("2026-11-22 10:05:00")
    beat.tick("2026-11-22 10:05:00")
    app = beat.scheduler.app
    expected = {
        "Job_ExtractICON": at("2026-11-22 10:30:00"),
        "Job_MaintainGIM": at("2026-11-23 03:00:00"),
        "Job_UpdateStats": at("2026-11-22 10:10:00"),
    }
    for job, when in expected.items():
        key = RedBeatSchedulerEntry.generate_key(app, MIRROR_PREFIX + job)
        entry = RedBeatSchedulerEntry.from_key(key, app)
        assert entry.options["gim_next_run"] == when.isoformat(), job
        assert entry.enabled is False and entry.task == job
        assert beat.redis.zscore("redbeat::schedule", key) == when.timestamp()
        assert entry.is_due()[0] is False
    export_key = RedBeatSchedulerEntry.generate_key(app, MIRROR_PREFIX + "Job_ExportGIM")
    assert not beat.redis.exists(export_key)  # run-export=false: no Next Run, no entry
    store.set_option(beat.engine, "schedule", "etl-frequency", "15", "test")
    beat.tick("2026-11-22 10:06:00")
    key = RedBeatSchedulerEntry.generate_key(app, MIRROR_PREFIX + "Job_ExtractICON")
    assert beat.redis.zscore("redbeat::schedule", key) == at("2026-11-22 10:15:00").timestamp()


def test_r2_sweep_ends_the_sessions_of_a_paused_process_that_hold_its_locks(
    gim_env: dict[str, str],
) -> None:
    """A paused worker (SIGSTOP, frozen VM) keeps its transaction and its locks: the FOR SHARE
    fence on its run row would block the sweep, and its extraction-mark locks every later run.
    The sweep ends that process's older sessions first, then declares the run lost."""
    import psycopg

    from gim_tasks.runtime.runs import sweep_lost

    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    # The worker's session, opened before its last heartbeat.
    paused = psycopg.connect(
        gim_env["GIM_DATABASE_URL"], application_name="gim-tasks pausedhost:4242"
    )
    with engine.begin() as conn:
        run_id = conn.execute(
            sa.text(
                "INSERT INTO job_run (job, trigger, actor, state, started_at, heartbeat_at, "
                "worker, fencing_token) VALUES ('Job_ExtractICON', 'manual', 't', 'Running', "
                "now(), now(), 'pausedhost:4242', 1) RETURNING id"
            )
        ).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO extract_mark (idb_id, table_name, done_snapshot) "
                "VALUES (1, 'party_segment', '1:1:')"
            )
        )
    paused.execute("SELECT 1 FROM job_run WHERE id = %s FOR SHARE", (run_id,))  # the fence
    locked = paused.execute("SELECT * FROM extract_mark FOR UPDATE").fetchall()
    assert len(locked) == 1  # the paused process really holds an extraction-mark lock
    bystander = psycopg.connect(
        gim_env["GIM_DATABASE_URL"], application_name="gim-tasks otherhost:1"
    )
    bystander.execute("SELECT 1")
    time.sleep(1.2)
    assert sweep_lost(engine, lease=1) == [run_id]
    with engine.connect() as conn:
        state, error = conn.execute(
            sa.text("SELECT state, error FROM job_run WHERE id = :i"), {"i": run_id}
        ).one()
    assert state == "Failed" and "worker lost" in error
    with pytest.raises(psycopg.OperationalError):
        paused.execute("SELECT 1")  # its session was ended, its locks released
    assert bystander.execute("SELECT 1").fetchone() == (1,)  # other processes untouched
    # The mark is free again: the next Extract can take it at once (no lock wait).
    bystander.execute("SET lock_timeout = '1s'")
    assert len(bystander.execute("SELECT * FROM extract_mark FOR UPDATE NOWAIT").fetchall()) == 1
    bystander.close()
    engine.dispose()


def test_c2_a_short_calendar_blocks_scheduled_firings_naming_it_but_spares_maintenance(
    beat: Beat,
) -> None:
    """C2 beyond option errors: a server-side item (the DATE_TIME calendar) blocks the beat's
    firings; the blocked firing is recorded with the item; maintenance, which repairs it, runs."""
    with beat.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM date_time"))
    beat.cursors("2026-11-23 02:59:00")
    beat.tick("2026-11-23 03:00:01")
    (maintenance,) = beat.rows("Job_MaintainGIM")
    assert maintenance.state == "Scheduled" and maintenance.dispatched_at is not None
    (stats,) = beat.rows("Job_UpdateStats")
    assert stats.state == "Rejected"
    assert "[gim-etl] date-time-min-days-ahead" in stats.reason
    assert stats.firing_id == "Job_UpdateStats:2026-11-23T02:00:00+00:00"
    beat.end(maintenance.id)
    beat.tick("2026-11-23 06:30:01")
    (extract,) = beat.rows("Job_ExtractICON")
    assert extract.state == "Rejected" and "date-time-min-days-ahead" in extract.reason


def test_c2_a_custom_calendar_that_runs_out_blocks_like_date_time(beat: Beat) -> None:
    """Issue 31: the calendar item covers every calendar. With an extra zone configured and
    its custom calendar empty (maintenance never filled it, run-maintain=false), the check
    names that calendar and blocks the firings; filled, it passes."""
    from gim_tasks.db import calendar
    from gim_tasks.runtime import health

    engine = beat.engine
    store.set_option(engine, "schedule", "run-maintain", "false", "test")
    store.set_option(engine, "gim-etl", "date-time-extra-time-zones", "Asia/Tokyo", "test")
    with engine.connect() as conn:
        options = store.load_options(conn)
        first, last = conn.execute(
            sa.text("SELECT min(date_time_key), max(date_time_key) FROM date_time")
        ).one()
    now = at("2026-11-23 03:00:00")
    (finding,) = health.check_calendar(options, get_settings(), now)
    assert finding.message.startswith("the custom calendar Asia/Tokyo is empty; it must reach")
    beat.cursors("2026-11-23 02:59:00")
    beat.tick("2026-11-23 03:00:01")
    (stats,) = beat.rows("Job_UpdateStats")
    assert stats.state == "Rejected" and "custom calendar Asia/Tokyo" in stats.reason
    with engine.begin() as conn:  # filled only ten days ahead: it runs out too soon
        start = int(now.timestamp()) // 900 * 900
        calendar.fill_extra(conn, "Asia/Tokyo", start, start + 10 * 86400)
    (short,) = health.check_calendar(options, get_settings(), now)
    assert "the custom calendar Asia/Tokyo reaches 2026-12-03 only" in short.message
    with engine.begin() as conn:
        calendar.fill_extra(conn, "Asia/Tokyo", first, last)
    assert health.check_calendar(options, get_settings(), now) == []


def test_m3_manual_aggregation_paused_for_maintenance_resumes_after_it(beat: Beat) -> None:
    """run-aggregates=false: scheduled maintenance pauses a manual aggregation (stop kind
    maintenance) and the beat resumes it, once, when maintenance has ended."""
    aggregation = beat.run("Job_AggregateGIM", "manual")
    beat.cursors("2026-11-23 02:59:00")
    beat.tick("2026-11-23 03:00:01")
    paused = beat.rows("Job_AggregateGIM")[0]
    assert paused.stop_requested_at is not None and paused.stop_kind == "maintenance"
    beat.end(aggregation, "Stopped")  # it stops at its next safe point
    beat.tick("2026-11-23 03:00:03")
    (maintenance,) = beat.rows("Job_MaintainGIM")
    assert maintenance.dispatched_at is not None  # released now that aggregation stopped
    beat.tick("2026-11-23 03:00:05")
    assert len(beat.rows("Job_AggregateGIM")) == 1  # not resumed during maintenance
    beat.end(maintenance.id)
    beat.tick("2026-11-23 03:30:01")
    beat.tick("2026-11-23 03:30:02")
    resumed = beat.rows("Job_AggregateGIM")[1:]
    assert [(r.firing_id, r.trigger, r.state) for r in resumed] == [
        (f"Job_AggregateGIM:resume-of-run-{aggregation}", "restart", "Scheduled")
    ]
    assert resumed[0].dispatched_at is not None and beat.queued("aggregate") == 1


def test_s11_resend_puts_a_lost_message_on_the_broker_once(beat: Beat) -> None:
    """The lost-message resend really sends: a run sent three minutes ago and never started
    is on the etl queue again after a tick (a message in Redis), and only once."""
    with beat.engine.begin() as conn:
        lost = conn.execute(
            sa.text(
                "INSERT INTO job_run (job, trigger, actor, state, dispatched_at) VALUES "
                "('Job_ExtractICON', 'manual', 't', 'Scheduled', now() - interval '3 minutes') "
                "RETURNING id"
            )
        ).scalar_one()
    assert beat.queued("etl") == 0
    beat.cursors("2026-11-23 10:01:00")
    beat.tick("2026-11-23 10:01:30")  # between slots: nothing else is sent
    assert beat.queued("etl") == 1
    message = json.loads(beat.redis.lindex("etl", 0))
    assert message["headers"]["task"] == "Job_ExtractICON"
    assert str(lost) in json.dumps(message["headers"]["kwargsrepr"])
    beat.tick("2026-11-23 10:01:40")
    assert beat.queued("etl") == 1  # marked sent again: not resent every tick


def test_m6_a_stop_not_honoured_within_the_grace_is_revoked_as_terminated(beat: Beat) -> None:
    """M6: a stop request older than the 60 s grace on a worker's run leads to revoke
    (terminate) and the stop kind `terminated` (R4); one within the grace and an in-process
    run (no task to revoke) are left to stop cooperatively."""
    ids = []
    for age, in_process in ((61, False), (30, False), (61, True)):
        with beat.engine.begin() as conn:
            ids.append(
                conn.execute(
                    sa.text(
                        "INSERT INTO job_run (job, trigger, actor, state, started_at, "
                        "heartbeat_at, fencing_token, task_id, in_process, stop_requested_at) "
                        "VALUES (:j, 'manual', 'x', 'Running', now(), now() + interval '1 day', "
                        "1, :t, :p, now() - make_interval(secs => :age)) RETURNING id"
                    ),
                    {
                        "j": ("Job_AggregateGIM", "Job_ExportGIM", "Job_MaintainGIM")[len(ids)],
                        "t": f"task-{len(ids)}",
                        "p": in_process,
                        "age": age,
                    },
                ).scalar_one()
            )
    beat.cursors("2026-11-23 10:01:00")
    beat.tick("2026-11-23 10:01:30")
    kinds = {
        row.id: row.stop_kind
        for job in ("Job_AggregateGIM", "Job_ExportGIM", "Job_MaintainGIM")
        for row in beat.rows(job)
    }
    assert [kinds[i] for i in ids] == ["terminated", None, None]


def test_r4_a_block_of_the_check_fails_each_firing_but_mails_once_when_it_starts_and_clears(
    beat: Beat,
) -> None:
    """R4, A3: every scheduled firing the configuration check blocks (C2) is a failure (a
    Rejected run with skip 'blocked'); the error subscribers get one mail when the block
    starts and one when it clears, not one per slot."""
    from gim_tasks.monitor import notify

    notify.add_subscription(beat.engine, "Job_ExtractICON", "ops@example.com", False, True, "t")
    notify.add_subscription(beat.engine, "Job_ExtractICON", "fyi@example.com", True, False, "t")
    with beat.engine.begin() as conn:
        calendar = conn.execute(sa.text("SELECT count(*) FROM date_time")).scalar_one()
        conn.execute(sa.text("CREATE TABLE saved_date_time AS SELECT * FROM date_time"))
        conn.execute(sa.text("DELETE FROM date_time"))
    assert calendar > 0
    beat.cursors("2026-11-23 06:29:00", "Job_ExtractICON")
    for slot in ("06:30:01", "07:00:01", "07:30:01"):  # etl-frequency 30 (the default)
        beat.tick(f"2026-11-23 {slot}")
    firings = beat.rows("Job_ExtractICON")
    assert [(r.state, r.skip) for r in firings] == [("Rejected", "blocked")] * 3
    assert all("date-time-min-days-ahead" in r.reason for r in firings)

    def mails() -> list[tuple[int, str, str]]:
        with beat.engine.connect() as conn:
            return [
                tuple(row)
                for row in conn.execute(
                    sa.text("SELECT run_id, recipient, kind FROM notification ORDER BY id")
                )
            ]

    def incidents() -> list[tuple[str, int, bool]]:
        with beat.engine.connect() as conn:
            return [
                tuple(row)
                for row in conn.execute(
                    sa.text(
                        "SELECT job, firings, resolved_at IS NOT NULL FROM incident "
                        "WHERE job = 'Job_ExtractICON' ORDER BY id"
                    )
                )
            ]

    first = firings[0].id
    assert mails() == [(first, "ops@example.com", "blocked")]  # one, to the error subscriber
    assert incidents() == [("Job_ExtractICON", 3, False)]
    with beat.engine.begin() as conn:  # the calendar is repaired (as maintenance would)
        conn.execute(sa.text("INSERT INTO date_time SELECT * FROM saved_date_time"))
    beat.scheduler.__dict__.pop("_server_check")  # the beat's 30 s server-check cache
    beat.tick("2026-11-23 07:35:01")  # no slot due: the block clears all the same
    assert incidents() == [("Job_ExtractICON", 3, True)]
    assert mails() == [
        (first, "ops@example.com", "blocked"),
        (first, "ops@example.com", "unblocked"),
    ]
    beat.tick("2026-11-23 08:00:01")
    assert beat.rows("Job_ExtractICON")[-1].state == "Scheduled"
    assert len(mails()) == 2  # nothing more
    # The letters, as the notify task composes them.

    with beat.engine.connect() as conn:
        run = conn.execute(sa.text(f"SELECT * FROM job_run WHERE id = {first}")).one()
        letters = [
            notify.compose(
                run,
                "ops@example.com",
                get_settings(),
                "Europe/Berlin",
                notify._letter(conn, kind, first),
            )
            for kind in ("blocked", "unblocked")
        ]
    assert (
        letters[0]["Subject"]
        == "[gim-tasks] Job_ExtractICON blocked: scheduled firings do not start"
    )
    assert "date-time-min-days-ahead" in letters[0].get_content()
    assert letters[1]["Subject"] == "[gim-tasks] Job_ExtractICON no longer blocked"
    assert "3 blocked firings" in letters[1].get_content()


def test_r2_sweep_also_ends_a_session_the_paused_process_opened_after_its_last_heartbeat(
    gim_env: dict[str, str],
) -> None:
    """A parallel table's connection opened just before the pause (after the last heartbeat)
    holds a staging table's writer lock in a COPY: it is ended too, since the process runs no
    other run. A process that does run another run keeps its newer sessions."""
    import psycopg

    from gim_tasks.db import locks
    from gim_tasks.runtime.runs import sweep_lost

    engine = make_engine(gim_env["GIM_DATABASE_URL"])

    def running(job: str, worker: str, heartbeat: str) -> int:
        with engine.begin() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "INSERT INTO job_run (job, trigger, actor, state, started_at, "
                        "heartbeat_at, worker, fencing_token) VALUES (:j, 'manual', 't', "
                        f"'Running', now(), {heartbeat}, :w, 1) RETURNING id"
                    ),
                    {"j": job, "w": worker},
                ).scalar_one()
            )

    lost = running("Job_ExtractICON", "pausedhost:7", "now() - interval '1 minute'")
    newer = psycopg.connect(gim_env["GIM_DATABASE_URL"], application_name="gim-tasks pausedhost:7")
    newer.execute(
        "SELECT pg_advisory_xact_lock(%s, %s)",
        (locks.STAGING_WRITE.key, locks.table_key("stg_party_segment")),
    )
    # Another process: its lost run is an old one, and it runs another run now.
    running("Job_TransformGIM", "busyhost:8", "now() - interval '1 minute'")
    running("Job_MaintainGIM", "busyhost:8", "now() + interval '1 day'")  # heartbeating
    busy = psycopg.connect(gim_env["GIM_DATABASE_URL"], application_name="gim-tasks busyhost:8")
    busy.execute("SELECT 1")
    swept = sweep_lost(engine, lease=30)
    assert lost in swept and len(swept) == 2
    with pytest.raises(psycopg.OperationalError):
        newer.execute("SELECT 1")  # ended although younger than the last heartbeat
    assert busy.execute("SELECT 1").fetchone() == (1,)  # the other run's session stays
    busy.close()
    engine.dispose()


def test_s11_a_beat_that_lost_its_lock_steps_down_and_takes_it_again(beat: Beat) -> None:
    """A tick stalled past the lock's timeout: the standby took the lock. The stalled beat
    does not exit (Celery beat would, on RedBeat's extend): it waits as the standby and holds
    the lock again once the other beat lets go of it."""
    import threading

    lock = beat.redis.lock("gim-test:beat-lock", timeout=5, sleep=0.1)
    assert lock.acquire(blocking=False)
    scheduler = beat.scheduler
    scheduler.lock, scheduler.lock_key, scheduler.lock_timeout = lock, "gim-test:beat-lock", 5
    other = beat.redis.lock("gim-test:beat-lock", timeout=5, thread_local=False)
    beat.redis.delete("gim-test:beat-lock")  # expired while this beat stalled...
    assert other.acquire(blocking=False)  # ...and the standby took it
    release = threading.Timer(1.0, other.release)  # the other beat goes away after 1 s
    release.start()
    began = time.monotonic()
    scheduler.keep_lock()
    assert 0.9 <= time.monotonic() - began < 4  # it waited as the standby, until the release
    assert lock.owned()  # and holds the lock again
    scheduler.keep_lock()  # an ordinary extend now
    lock.release()
