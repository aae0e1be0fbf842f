"""SPEC L1-L3 as the beat carries them out, on real PostgreSQL and Redis with an injected
clock (runtime/limits.py): a time limit's warn and stop, one slow incident per run, a
collision warning before a slow ETL cycle reaches its next slot, retries of transient
failures with letters on the final outcome only (issue 36). Real workers, SIGSTOP and SIGKILL:
tests/system/test_runtime.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from gim_tasks.db.engine import make_engine
from gim_tasks.db.tables import firing, incident, job_run, notification
from gim_tasks.lifecycle import Channel
from gim_tasks.monitor import audit, notify
from gim_tasks.options import store
from gim_tasks.runtime import limits, runs
from gim_tasks.schedule.jobs import EXPORT, EXTRACT, MAINTAIN, UPDATE_STATS


class Mart:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

    def option(self, name: str, value: str, section: str = "limits") -> None:
        store.set_option(self.engine, section, name, value, "test")

    def options(self) -> Any:
        with self.engine.connect() as conn:
            return store.load_options(conn)

    def run(self, job: str, started: datetime, **values: Any) -> int:
        with self.engine.begin() as conn:
            return int(
                runs.record(
                    conn,
                    {
                        "job": job,
                        "trigger": "scheduled",
                        "actor": "scheduler",
                        "state": "Running",
                        "started_at": started,
                        "heartbeat_at": sa.func.now(),
                        "fencing_token": 1,
                        **values,
                    },
                )
                or 0
            )

    def row(self, run_id: int) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(job_run).where(job_run.c.id == run_id)).one()

    def incidents(self, condition: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(incident).where(incident.c.condition == condition).order_by("id")
                )
            )

    def letters(self, run_id: int) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(notification)
                    .where(notification.c.run_id == run_id)
                ).scalar_one()
            )

    def check(self, now: datetime, guard: limits.Limits | None = None) -> list[Any]:
        with audit.origin(Channel.BEAT):
            return (guard or limits.Limits()).check(self.engine, None, self.options(), now)


@pytest.fixture
def mart(gim_env: dict[str, str]) -> Iterator[Mart]:
    found = Mart(gim_env["GIM_DATABASE_URL"])
    yield found
    found.engine.dispose()


def _now(mart: Mart) -> datetime:
    with mart.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.now())).scalar_one().astimezone(UTC)


def test_l1_warn_opens_one_incident_stops_nothing_and_resolves_at_the_end(mart: Mart) -> None:
    mart.option("max-runtime", f"{EXPORT}=20m:warn")
    now = _now(mart)
    run_id = mart.run(EXPORT, now - timedelta(minutes=21))
    for second in range(3):  # every pass sees it; one incident
        mart.check(now + timedelta(seconds=second))
    opened = mart.incidents("time-limit")
    assert [(i.job, i.run_id, i.resolved_at) for i in opened] == [(EXPORT, run_id, None)]
    assert "past its limit of 20m00s ([limits] max-runtime, warn) (L1)" in opened[0].detail
    row = mart.row(run_id)
    assert row.state == "Running" and row.stop_requested_at is None
    runs.finish_run(mart.engine, run_id, "Completed", runs.Counts())
    mart.check(now + timedelta(seconds=5))
    assert mart.incidents("time-limit")[0].resolved_at is not None


def test_l1_stop_requests_a_time_limit_stop_and_the_revoke_keeps_its_kind(mart: Mart) -> None:
    mart.option("max-runtime", f"{MAINTAIN}=30m")  # the default action: stop
    now = _now(mart)
    run_id = mart.run(MAINTAIN, now - timedelta(minutes=31), task_id="t-1")
    mart.check(now)
    row = mart.row(run_id)
    assert row.stop_kind == "time-limit" and row.ended_by == "gim-tasks"
    assert "(L1)" in row.reason and row.stop_requested_at is not None
    with mart.engine.begin() as conn:  # the stop grace passes: the beat revokes it
        conn.execute(
            sa.update(job_run)
            .where(job_run.c.id == run_id)
            .values(stop_requested_at=sa.func.now() - sa.text("interval '2 minutes'"))
        )
    assert runs.overdue_stops(mart.engine) == [(run_id, "t-1")]
    assert mart.row(run_id).stop_kind == "time-limit"  # not "terminated": still L1
    # Its worker is gone (SIGSTOP, revoked): the R2 sweep ends it Stopped, time-limit (R4: a
    # failure), no retry (it was stopped, not lost).
    mart.option("retries", f"{MAINTAIN}=2")
    assert runs.sweep_lost(mart.engine, lease=-1) == [run_id]
    row = mart.row(run_id)
    assert (row.state, row.stop_kind, row.retry) == ("Stopped", "time-limit", None)
    with mart.engine.connect() as conn:
        audited = conn.execute(
            sa.select(audit.audit_event.c.action, audit.audit_event.c.channel).where(
                audit.audit_event.c.target == str(run_id)
            )
        ).all()
    assert [tuple(a) for a in audited] == [("stop", "beat")]


def test_l2_one_slow_incident_per_run(mart: Mart) -> None:
    now = _now(mart)
    for n in range(10):  # ten successes of about a minute
        mart.run(
            UPDATE_STATS,
            now - timedelta(hours=5, minutes=n * 5),
            state="Completed",
            ended_at=now - timedelta(hours=5, minutes=n * 5 - 1),
        )
    first = mart.run(UPDATE_STATS, now - timedelta(minutes=3))  # 3 min > 2 x 1 min
    guard = limits.Limits()
    mart.check(now, guard)
    mart.check(now + timedelta(seconds=5), guard)
    assert [(i.run_id, i.resolved_at is None) for i in mart.incidents("slow")] == [(first, True)]
    runs.finish_run(mart.engine, first, "Completed", runs.Counts())
    second = mart.run(UPDATE_STATS, now - timedelta(minutes=4))
    mart.check(now + timedelta(seconds=10), guard)
    slow = mart.incidents("slow")
    assert [(i.run_id, i.resolved_at is None) for i in slow] == [(first, False), (second, True)]
    assert "more than 2 x the p95 of its last 10 successes" in slow[1].detail


def test_l2_a_slow_etl_cycle_warns_before_it_reaches_its_next_slot(mart: Mart) -> None:
    mart.option("etl-frequency", "15", section="schedule")
    options = mart.options()
    slots, _ = limits.next_slots(options.schedule(), _now(mart))
    slot = slots[EXTRACT]
    # Four minutes before the slot, a cycle 30 % through after 10 minutes ends well past it.
    before = slot - timedelta(minutes=4)
    run_id = mart.run(EXTRACT, before - timedelta(minutes=10))
    with mart.engine.begin() as conn:
        conn.execute(
            sa.update(job_run)
            .where(job_run.c.id == run_id)
            .values(summary={"progress": {"what": "extract", "done": 30, "total": 100}})
        )
    assert [f.kind for f in mart.check(slot - timedelta(minutes=6))] == []  # not yet 5 min
    found = mart.check(before)
    assert [f.kind for f in found] == ["collision"]
    opened = mart.incidents("collision-ahead")
    assert len(opened) == 1 and f"{slot:%H:%M:%S}" in opened[0].detail


# ----- L3 -------------------------------------------------------------------------------------


def _fail(mart: Mart, run_id: int, transient: bool = True) -> None:
    assert runs.finish_run(
        mart.engine,
        run_id,
        "Failed",
        runs.Counts(),
        error="OperationalError: gone",
        transient=transient,
    )


def test_l3_a_transient_failure_is_retried_as_attempt_2_of_its_firing_with_one_letter(
    mart: Mart,
) -> None:
    mart.option("retries", f"{MAINTAIN}=1")
    mart.option("retry-delay-seconds", "30")
    notify.add_subscription(mart.engine, MAINTAIN, "ops@example.com", True, True, "test")
    now = _now(mart)
    planned = now - timedelta(minutes=2)
    fid = f"{MAINTAIN}:{planned.isoformat()}"
    with mart.engine.begin() as conn:
        conn.execute(
            sa.insert(firing).values(
                firing_id=fid, stream="maintenance", job=MAINTAIN, planned_at=planned,
                verdict="on-time", decided_at=planned,
            )
        )  # fmt: skip
    first = mart.run(MAINTAIN, planned, firing_id=fid)
    assert mart.row(first).max_attempts == 2
    _fail(mart, first)
    assert mart.row(first).retry == "pending" and mart.letters(first) == 0  # no letter yet
    mart.check(now)  # the delay (30 s) has not passed
    assert mart.row(first).retry == "pending"
    mart.check(now + timedelta(seconds=31))
    assert mart.row(first).retry == "retried" and mart.letters(first) == 0
    with mart.engine.connect() as conn:
        second = conn.execute(sa.select(job_run).where(job_run.c.retry_of == first)).one()
        ledger = conn.execute(sa.select(firing).where(firing.c.firing_id == fid)).one()
    assert (second.attempt, second.max_attempts, second.trigger) == (2, 2, "retry")
    assert second.firing_id == f"{fid}#2" and second.state == "Scheduled"
    assert (ledger.attempts, ledger.run_id) == (2, second.id)
    with mart.engine.connect() as conn:  # P6: the retry audited as the beat's, not a path's
        row = conn.execute(
            sa.select(audit.audit_event).where(audit.audit_event.c.action == "run")
        ).one()
    assert (row.actor, row.channel, row.after["via"]) == ("gim-tasks", "beat", "retry")
    mart.check(now + timedelta(seconds=40))  # a second pass (or beat) makes no second retry
    with mart.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(job_run)).scalar_one() == 2
    with mart.engine.begin() as conn:  # the retry runs and succeeds
        conn.execute(
            sa.update(job_run)
            .where(job_run.c.id == second.id)
            .values(state="Running", started_at=sa.func.now(), fencing_token=2)
        )
    runs.finish_run(mart.engine, second.id, "Completed", runs.Counts())
    assert mart.letters(second.id) == 1 and mart.letters(first) == 0  # one letter: the outcome


def test_l3_no_retry_past_the_next_slot_and_the_letter_goes_then(mart: Mart) -> None:
    mart.option("retries", f"{EXTRACT}=3")
    mart.option("retry-delay-seconds", "3600")
    mart.option("etl-frequency", "15", section="schedule")
    # Round the clock (end = start): the next slot is within 15 minutes whatever the hour; with
    # the default window (06:30 to 00:30) the test failed between 00:30 and 06:30, when the
    # next slot is the morning's and a retry in an hour fits before it.
    mart.option("etl-end-time", "06:30", section="schedule")
    notify.add_subscription(mart.engine, EXTRACT, "ops@example.com", False, True, "test")
    now = _now(mart)
    run_id = mart.run(EXTRACT, now - timedelta(minutes=1))
    _fail(mart, run_id)
    assert mart.letters(run_id) == 0
    mart.check(now)
    row = mart.row(run_id)
    assert (
        row.retry == "final" and "retry would overlap the next slot of Job_ExtractICON" in row.error
    )
    assert mart.letters(run_id) == 1  # the final outcome is mailed, once


def test_l3_a_configuration_or_data_error_is_never_retried(mart: Mart) -> None:
    mart.option("retries", f"{EXPORT}=3")
    now = _now(mart)
    run_id = mart.run(EXPORT, now - timedelta(minutes=1))
    _fail(mart, run_id, transient=False)
    mart.check(now + timedelta(hours=1))
    assert mart.row(run_id).retry is None
    with mart.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(job_run)).scalar_one() == 1


def test_l3_a_lost_worker_is_transient_and_a_job_without_retries_keeps_none(mart: Mart) -> None:
    mart.option("retries", f"{EXPORT}=1")
    now = _now(mart)
    export = mart.run(EXPORT, now - timedelta(minutes=1))
    stats = mart.run(UPDATE_STATS, now - timedelta(minutes=1))
    assert sorted(runs.sweep_lost(mart.engine, lease=-1)) == sorted([export, stats])
    assert mart.row(export).retry == "pending" and mart.row(stats).retry is None
