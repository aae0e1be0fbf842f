"""The exclusivity gate's table (issue 33): every row cites its rule, and the gate answers the
engine, admission and the ledger from it (S2, S4, S5, S7, S8, S13, M5)."""

from __future__ import annotations

from datetime import UTC, datetime

from gim_tasks.lifecycle import StopKind
from gim_tasks.schedule.gate import ROWS, TABLE, Ask, Outcome, gate, rows_for
from gim_tasks.schedule.jobs import AGGREGATE, EXPORT, EXTRACT, JOBS, MAINTAIN, TRANSFORM
from gim_tasks.schedule.spec import EXCLUSIVITY
from gim_tasks.schedule.state import ActiveRun, CycleView, SchedulerState, WaitingRun

RULE_OF = {row.id: row.id.split("-")[0] for row in TABLE}


def test_every_row_cites_its_rule_and_every_class_has_rows_for_both_askers() -> None:
    for row in TABLE:
        assert f"({RULE_OF[row.id]}" in row.words, row.id
        assert set(row.who) <= set(EXCLUSIVITY), row.id
        assert (row.outcome is Outcome.STOP) == (row.kind is not None), row.id
    assert len(ROWS) == len(TABLE)  # row ids are unique
    for cls in EXCLUSIVITY:
        assert rows_for(cls, Ask.SCHEDULER) and rows_for(cls, Ask.MANUAL), cls
    assert {spec.exclusivity for spec in JOBS} <= set(EXCLUSIVITY)


def test_s5_a_due_cycle_stops_scheduled_maintenance_then_waits_for_it() -> None:
    maintenance = ActiveRun(7, MAINTAIN, "scheduled")
    decision = gate(EXTRACT, Ask.SCHEDULER, SchedulerState(running=(maintenance,)), planned="x")
    assert decision.outcome is Outcome.WAIT and decision.row == "S5-wait"
    assert decision.stops == ((maintenance, ROWS["S5-preempt"].words.format(planned="x"),
                               StopKind.PREEMPTED),)  # fmt: skip
    # Already waiting, it asks again: no second stop (new-only row), it keeps waiting.
    again = gate(EXTRACT, Ask.SCHEDULER, SchedulerState(running=(maintenance,)), waiting=9)
    assert again.stops == () and not again.go


def test_s13_manual_maintenance_is_never_preempted() -> None:
    maintenance = ActiveRun(7, MAINTAIN, "manual")
    decision = gate(EXTRACT, Ask.SCHEDULER, SchedulerState(running=(maintenance,)))
    assert decision.row == "S13-scheduled" and decision.stops == ()
    assert decision.reason == "waiting for manual maintenance run 7 (S13)"


def test_m5_manual_maintenance_waits_for_every_run_and_an_owed_transform() -> None:
    cycle = CycleView(datetime(2026, 11, 23, 5, 30, tzinfo=UTC), "Completed", None)
    state = SchedulerState(running=(ActiveRun(3, EXPORT, "scheduled"),), last_cycle=cycle)
    decision = gate(MAINTAIN, Ask.MANUAL, state)
    assert decision.outcome is Outcome.WAIT and decision.row == "M5-others"
    assert decision.reason is not None and decision.reason.startswith(
        f"waiting for {EXPORT} run 3, {TRANSFORM} of the cycle planned at 2026-11-23 05:30 (M5)"
    )


def test_s7_s8_maintenance_waiting_holds_export_and_a_window_but_not_a_new_manual_run() -> None:
    state = SchedulerState(waiting=(WaitingRun(4, MAINTAIN, "manual"),))
    assert gate(EXPORT, Ask.SCHEDULER, state).row == "S8-maintenance-waiting"
    assert gate(AGGREGATE, Ask.SCHEDULER, state).row == "S7-maintenance-waiting"
    assert gate(EXTRACT, Ask.MANUAL, state).go  # admitted; once waiting it would wait (S8)
    assert gate(EXTRACT, Ask.MANUAL, state, waiting=5).row == "S8-manual-maintenance-waiting"


def test_s2_the_asking_run_does_not_block_itself() -> None:
    state = SchedulerState(waiting=(WaitingRun(4, EXPORT, "manual"),))
    assert gate(EXPORT, Ask.MANUAL, state).row == "S2-waiting"
    assert gate(EXPORT, Ask.MANUAL, state, waiting=4).go
