"""SPEC L1-L3 decided purely (schedule/limits.py): time limits, slow runs, collisions ahead,
when a retry may run; the option's form; which errors are transient (issue 36)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import psycopg.errors
import pytest
import redis.exceptions
import sqlalchemy.exc

from gim_tasks.errors import GimError, TransientError, is_transient
from gim_tasks.options.registry import OptionError, lookup
from gim_tasks.schedule.jobs import AGGREGATE, EXPORT, EXTRACT, MAINTAIN, TRANSFORM, UPDATE_STATS
from gim_tasks.schedule.limits import History, Limit, RunningRun, judge, retry_plan

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
AHEAD = timedelta(minutes=5)


def run(job: str, minutes: float, run_id: int = 1, **kw: object) -> RunningRun:
    return RunningRun(run_id, job, NOW - timedelta(minutes=minutes), **kw)  # type: ignore[arg-type]


def kinds(found: list) -> list[tuple[str, int, str]]:  # type: ignore[type-arg]
    return [(f.kind, f.run.run_id, f.action) for f in found]


def test_l1_a_run_past_its_limit_is_over_with_its_action_and_aggregation_is_exempt() -> None:
    limits = {
        MAINTAIN: Limit(MAINTAIN, 7200, "stop"),
        EXPORT: Limit(EXPORT, 1200, "warn"),
        AGGREGATE: Limit(AGGREGATE, 60, "stop"),  # the option refuses it; judge ignores it too
    }
    running = [
        run(MAINTAIN, 119, 1),
        run(MAINTAIN, 120, 2),
        run(EXPORT, 25, 3),
        run(AGGREGATE, 600, 4),
    ]
    found = judge(running, limits, {}, 2.0, {}, None, AHEAD, NOW)
    assert kinds(found) == [("over", 2, "stop"), ("over", 3, "warn")]
    assert "past its limit of 2h00m" in found[0].detail and "(L1)" in found[0].detail


def test_l2_slow_needs_ten_successes_and_k_times_the_95th_percentile() -> None:
    history = {UPDATE_STATS: History(10, 60.0), MAINTAIN: History(9, 60.0)}
    running = [run(UPDATE_STATS, 2.01, 1), run(MAINTAIN, 30, 2)]
    assert kinds(judge(running, {}, history, 2.0, {}, None, AHEAD, NOW)) == [("slow", 1, "")]
    assert judge([run(UPDATE_STATS, 1.99, 1)], {}, history, 2.0, {}, None, AHEAD, NOW) == []
    assert kinds(judge([run(UPDATE_STATS, 1.6, 1)], {}, history, 1.5, {}, None, AHEAD, NOW)) == [
        ("slow", 1, "")
    ]


def test_l2_a_cycle_predicted_past_its_next_slot_warns_within_the_warning_time() -> None:
    slot = NOW + timedelta(minutes=4)
    # Progress: 40 % done after 8 minutes -> ends 12 minutes from now, past the slot in 4.
    slow = run(EXTRACT, 8, 1, progress=(40.0, 100.0))
    found = judge([slow], {}, {}, 2.0, {EXTRACT: slot}, None, AHEAD, NOW)
    assert kinds(found) == [("collision", 1, "")]
    assert "the next slot of Job_ExtractICON" in found[0].detail
    # The same, with the slot 10 minutes away: not yet (the warning is 5 minutes ahead).
    later = {EXTRACT: NOW + timedelta(minutes=10)}
    assert judge([slow], {}, {}, 2.0, later, None, AHEAD, NOW) == []
    # Nearly done: ends before the slot.
    quick = run(EXTRACT, 8, 1, progress=(95.0, 100.0))
    assert judge([quick], {}, {}, 2.0, {EXTRACT: slot}, None, AHEAD, NOW) == []


def test_l2_transform_is_judged_against_extracts_slot_and_maintenance_counts_too() -> None:
    history = {TRANSFORM: History(12, 600.0)}  # p95 10 minutes, started 2 minutes ago
    found = judge(
        [run(TRANSFORM, 2, 7)],
        {},
        history,
        2.0,
        {EXTRACT: NOW + timedelta(minutes=30)},
        NOW + timedelta(minutes=3),
        AHEAD,
        NOW,
    )
    assert kinds(found) == [("collision", 7, "")]
    assert "the next maintenance start" in found[0].detail
    # Without history or progress nothing is predicted; a job that is no cycle or export is not.
    assert (
        judge([run(TRANSFORM, 2, 7)], {}, {}, 2.0, {}, NOW + timedelta(minutes=3), AHEAD, NOW) == []
    )
    stats = {UPDATE_STATS: History(12, 600.0)}
    assert (
        judge([run(UPDATE_STATS, 2)], {}, stats, 2.0, {}, NOW + timedelta(minutes=3), AHEAD, NOW)
        == []
    )


def test_judge_refuses_a_naive_clock() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        judge([], {}, {}, 2.0, {}, None, AHEAD, NOW.replace(tzinfo=None))


# ----- L3 -----------------------------------------------------------------------------------


def test_l3_the_delay_doubles_and_the_attempts_run_out() -> None:
    first = retry_plan(EXTRACT, 1, 3, NOW, 60, None, None, 0)
    second = retry_plan(EXTRACT, 2, 3, NOW, 60, None, None, 0)
    assert first.at == NOW + timedelta(seconds=60) and second.at == NOW + timedelta(seconds=120)
    assert "attempt 2 of 3" in first.reason
    done = retry_plan(EXTRACT, 3, 3, NOW, 60, None, None, 0)
    assert done.at is None and "no attempt left" in done.reason


def test_l3_never_at_or_past_the_next_slot_nor_into_maintenance() -> None:
    slot = NOW + timedelta(seconds=60)
    at_slot = retry_plan(EXTRACT, 1, 2, NOW, 60, slot, None, 0)
    assert (
        at_slot.at is None
        and "retry would overlap the next slot of Job_ExtractICON" in at_slot.reason
    )
    # Maintenance starts while the retry would still run (its p95: 10 minutes).
    maintenance = NOW + timedelta(minutes=5)
    into = retry_plan(EXPORT, 1, 2, NOW, 60, None, maintenance, 600)
    assert into.at is None and "retry would overlap maintenance at" in into.reason
    assert retry_plan(EXPORT, 1, 2, NOW, 60, None, maintenance, 60).at is not None
    # Maintenance itself is not held back by its own start.
    assert retry_plan(MAINTAIN, 1, 2, NOW, 60, None, maintenance, 600).at is not None


# ----- the option -----------------------------------------------------------------------------


def test_max_runtime_parses_and_names_what_is_wrong() -> None:
    spec = lookup("limits", "max-runtime")
    assert spec.parse(f"{MAINTAIN}=2h:stop, {EXPORT}=20m:warn, {UPDATE_STATS}=1h30m") == (
        (MAINTAIN, 7200, "stop"),
        (EXPORT, 1200, "warn"),
        (UPDATE_STATS, 5400, "stop"),
    )
    assert spec.type.format(spec.parse(f"{EXPORT}=90s:warn")) == f"{EXPORT}=1m30s:warn"
    for text, words in (
        (f"{AGGREGATE}=1h", "its aggregation window is its limit"),
        (f"{EXPORT}=5s", "not from 10s to 7 days"),
        (f"{EXPORT}=20x", "is not a duration like 2h"),
        (f"{EXPORT}=20m:kill", "'kill' is not warn or stop"),
        (f"{EXPORT}=20m, {EXPORT}=1h", "listed twice"),
        ("Job_Nope=1h", "'Job_Nope' is not a job"),
    ):
        with pytest.raises(OptionError, match=words):
            spec.parse(text)


# ----- transient errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (TransientError("the IDB is restarting"), True),
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (psycopg.errors.LockNotAvailable("lock timeout"), True),
        (psycopg.errors.AdminShutdown("terminating connection"), True),
        (psycopg.errors.DeadlockDetected("deadlock"), True),
        (redis.exceptions.ConnectionError("Connection refused"), True),
        (sqlalchemy.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("gone")), True),
        (psycopg.errors.QueryCanceled("canceling statement due to user request"), False),
        (psycopg.errors.DiskFull("no space"), False),
        (psycopg.errors.UniqueViolation("duplicate key"), False),
        (psycopg.errors.InvalidTextRepresentation("bad data"), False),
        (GimError("[gim-etl] days-to-keep-staging is invalid (C2)"), False),
        (ValueError("bad --params"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_l3_which_errors_a_retry_may_cure(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient
