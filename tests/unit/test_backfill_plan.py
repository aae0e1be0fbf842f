"""SPEC B1, B2 without servers: a back-fill cut into items in its order, which items start
next, the time left, the chunks a day owns (across DST), and the gate's rows for items and
the pool: lowest priority, room kept for ETL, position and holders in the words."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from gim_tasks.errors import GimError
from gim_tasks.schedule import backfill as plan
from gim_tasks.schedule.gate import Ask, Outcome, gate
from gim_tasks.schedule.jobs import BACKFILL, EXPORT, EXTRACT, MAINTAIN, TRANSFORM
from gim_tasks.schedule.state import ActiveRun, PoolHolder, Pools, SchedulerState, WaitingRun

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
FIRING = ("backfill:3:aggregate:2026-11-20", NOW)
POOL = Pools("heavy-db", 3, {EXTRACT: 1, TRANSFORM: 1, MAINTAIN: 1, BACKFILL: 1})


def request(**values: object) -> plan.Request:
    base: dict[str, object] = {
        "first": date(2026, 11, 20),
        "last": date(2026, 11, 22),
        "steps": ("export", "aggregate"),
        "reason": "outage",
    }
    return plan.Request(**(base | values))  # type: ignore[arg-type]


def test_b1_a_request_is_checked_and_its_steps_ordered_aggregate_first() -> None:
    checked = plan.check(request(), date(2026, 11, 24))
    assert checked.steps == ("aggregate", "export")
    with pytest.raises(GimError, match="is not a past day"):
        plan.check(request(last=date(2026, 11, 24)), date(2026, 11, 24))
    with pytest.raises(GimError, match="at most 366 per back-fill"):
        plan.check(request(first=date(2024, 1, 1)), date(2026, 11, 24))
    with pytest.raises(GimError, match="--steps is empty"):
        plan.check(request(steps=(" ",)), date(2026, 11, 24))


def test_b1_items_follow_the_order_and_take_the_days_the_mode_found() -> None:
    checked = plan.check(request(order="newest", reprocess="all"), date(2026, 11, 24))
    selected = {
        "aggregate": {date(2026, 11, 20), date(2026, 11, 22)},
        "export": {date(2026, 11, 21)},
    }
    found = plan.items(checked, selected, {date(2026, 11, 21): 4}, "SUBHOUR to YEAR")
    assert [(i.position, i.day.day, i.step) for i in found] == [
        (1, 22, "aggregate"),
        (2, 21, "export"),
        (3, 20, "aggregate"),
    ]
    assert found[1].action == "rewrite the 4 exported chunk(s) of 2026-11-21 as a new generation"


def test_b1_next_items_owed_attempts_first_then_fresh_ones_within_max_parallel() -> None:
    day = date(2026, 11, 20)
    states = [
        plan.ItemState(1, "aggregate", day, "Completed"),
        plan.ItemState(2, "export", day, "Running"),
        plan.ItemState(3, "aggregate", day, None),
        plan.ItemState(4, "export", day, "Failed", retry_pending=True, attempt=1),
        plan.ItemState(5, "export", day, None),
    ]
    assert [s.position for s in plan.next_items(states, 3)] == [4, 3]
    assert plan.next_items(states, 1) == []
    assert not plan.finished(states)
    ended = [plan.ItemState(1, "aggregate", day, "Completed"),
             plan.ItemState(2, "export", day, "Failed")]  # fmt: skip
    assert plan.finished(ended)
    assert not plan.finished([*ended, plan.ItemState(3, "export", day, "Failed", True)])


def test_b1_the_time_left_comes_from_measured_items_or_is_unknown() -> None:
    day = date(2026, 11, 20)
    states = [plan.ItemState(n, step, day) for n, step in enumerate(("aggregate", "export") * 2)]
    assert plan.estimate_left(states, {"aggregate": [10.0]}, 2) is None  # export never measured
    left = plan.estimate_left(states, {"aggregate": [10.0, 30.0, 20.0], "export": [8.0]}, 2)
    assert left == 2 * 20.0 + 2 * 8.0 / 2  # aggregate items write one at a time


def test_b1_a_day_owns_the_chunks_starting_on_it_across_dst() -> None:
    mark = datetime(2026, 12, 1, tzinfo=UTC)
    # 2026-10-25 in Berlin has 25 hours: 23:00 UTC the day before to 23:00 UTC.
    chunks = plan.chunks_of_day(date(2026, 10, 25), "Europe/Berlin", 3600, mark)
    assert len(chunks) == 25
    assert chunks[0][0] == datetime(2026, 10, 24, 22, tzinfo=UTC)
    six = plan.chunks_of_day(date(2026, 11, 20), "Europe/Berlin", 21600, mark)
    # 6-hour chunks at 00, 06, 12, 18 UTC; the day runs 23:00 to 23:00 UTC: 4 start on it.
    assert [c[0].hour for c in six] == [0, 6, 12, 18]
    assert plan.chunks_of_day(date(2026, 11, 20), "UTC", 3600, datetime(2026, 11, 20, 5,
                                                                        tzinfo=UTC)) == [
        (datetime(2026, 11, 20, h, tzinfo=UTC), datetime(2026, 11, 20, h + 1, tzinfo=UTC))
        for h in range(5)
    ]  # fmt: skip


def ask(state: SchedulerState, firing: tuple[str, datetime] = FIRING) -> object:
    return gate(BACKFILL, Ask.SCHEDULER, state, firing=firing)


def test_b1_items_wait_for_maintenance_a_waiting_cycle_and_the_same_day_and_step() -> None:
    maintenance = SchedulerState(running=(ActiveRun(7, MAINTAIN, "scheduled"),), pools=POOL)
    decision = ask(maintenance)
    assert decision.outcome is Outcome.WAIT and decision.row == "B1-maintenance"  # type: ignore[attr-defined]
    waiting = SchedulerState(waiting=(WaitingRun(8, MAINTAIN, "scheduled"),), pools=POOL)
    assert ask(waiting).row == "B1-maintenance-waiting"  # type: ignore[attr-defined]
    cycle = SchedulerState(waiting=(WaitingRun(9, EXTRACT, "scheduled"),), pools=POOL)
    assert ask(cycle).reason == "the ETL cycle waiting as run 9 goes first (B1)"  # type: ignore[attr-defined]
    same = ActiveRun(5, BACKFILL, "backfill", firing_id="backfill:2:aggregate:2026-11-20#2")
    other_day = ActiveRun(6, BACKFILL, "backfill", firing_id="backfill:2:aggregate:2026-11-21")
    assert ask(SchedulerState(running=(same,), pools=POOL)).row == "B1-same-item"  # type: ignore[attr-defined]
    assert ask(SchedulerState(running=(other_day,), pools=POOL)).go  # type: ignore[attr-defined]


def test_b1_an_operator_pause_of_the_job_holds_the_items() -> None:
    from gim_tasks.schedule.holds import Holds, Pause

    holds = Holds(pauses={BACKFILL: Pause(BACKFILL, "month end", "ops")})
    decision = ask(SchedulerState(holds=holds, pools=POOL))
    assert decision.row == "P1-paused"  # type: ignore[attr-defined]


def test_b2_items_leave_room_for_etl_and_say_their_position_and_the_holders() -> None:
    held = Pools("heavy-db", 3, POOL.weights, (PoolHolder(5, BACKFILL, 1),))
    one = SchedulerState(running=(ActiveRun(5, BACKFILL, "backfill"),), pools=held)
    assert ask(one).go  # 1 held + 1 + 1 kept for ETL <= 3
    two = SchedulerState(
        pools=Pools(
            "heavy-db", 3, POOL.weights, (PoolHolder(5, BACKFILL, 1), PoolHolder(6, BACKFILL, 1))
        )  # fmt: skip
    )
    decision = ask(two)
    assert decision.row == "B2-pool"  # type: ignore[attr-defined]
    assert decision.reason == (  # type: ignore[attr-defined]
        f"waiting for 1 slot(s) of pool heavy-db: 2 of 3 held by {BACKFILL} run 5, {BACKFILL} "
        "run 6; position 1 in its queue; 1 kept for the jobs above back-fill (B2)"
    )
    # ETL is not held back by the items: the slot kept is its own.
    assert gate(EXTRACT, Ask.SCHEDULER, two).go


def test_b2_a_waiting_run_of_a_higher_priority_goes_first() -> None:
    holders = (PoolHolder(5, EXTRACT, 1), PoolHolder(6, BACKFILL, 1))
    state = SchedulerState(
        waiting=(WaitingRun(9, MAINTAIN, "manual"), WaitingRun(10, EXPORT, "manual")),
        pools=Pools("heavy-db", 3, POOL.weights, holders),
    )
    # Maintenance (priority 1) waits for its slot; a new Extract (priority 0) still fits.
    assert gate(EXTRACT, Ask.MANUAL, state).go
    full = SchedulerState(
        waiting=(WaitingRun(9, MAINTAIN, "manual"),),
        pools=Pools("heavy-db", 2, POOL.weights, holders),
    )
    decision = gate(MAINTAIN, Ask.MANUAL, full, waiting=9)
    assert decision.row in ("M5-others", "B2-pool")  # M5 waits for every run first
    # A job outside the pool never waits for it.
    assert gate(EXPORT, Ask.MANUAL, full).go
