"""Decisions of the firing engine for every scheduler rule, from hand-made state snapshots.

The sample schedule of the seed: ETL every 30 min from 06:30 to 00:30, maintenance at 03:00,
aggregation windows of 23:00 from 04:00, in Europe/Berlin.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from gim_tasks.lifecycle import StopKind
from gim_tasks.options.values import Options, ScheduleOptions
from gim_tasks.schedule.engine import (
    Hold,
    Launch,
    Release,
    Skip,
    Stop,
    Tick,
    decide,
)
from gim_tasks.schedule.firings import firing_id
from gim_tasks.schedule.jobs import (
    AGGREGATE,
    BACKFILL,
    EXPORT,
    EXTRACT,
    MAINTAIN,
    TRANSFORM,
    UPDATE_STATS,
)
from gim_tasks.schedule.localtime import resolve, zone
from gim_tasks.schedule.state import ActiveRun, CycleView, SchedulerState, WaitingRun

TZ = zone("Europe/Berlin")


def opts(**overrides: str) -> ScheduleOptions:
    texts = {("schedule", "timezone"): "Europe/Berlin"}
    texts.update({("schedule", key.replace("_", "-")): value for key, value in overrides.items()})
    return Options.from_texts(texts, strict=True).schedule()


def at(text: str) -> datetime:
    """A Europe/Berlin wall time 'YYYY-MM-DD HH:MM[:SS]' as an aware instant."""
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    return resolve(datetime.strptime(text, fmt), TZ)


def cursors_at(instant: datetime, *jobs: str) -> dict[str, datetime]:
    """Every stream handled up to ``instant`` (a running beat's state)."""
    return dict.fromkeys(jobs or (EXTRACT, MAINTAIN, UPDATE_STATS, EXPORT, AGGREGATE), instant)


def tick(options: ScheduleOptions, now: str, refusal: str | None = None, **state: object) -> Tick:
    state.setdefault("cursors", cursors_at(at(now) - timedelta(seconds=1)))
    return decide(options, at(now), SchedulerState(**state), refusal)  # type: ignore[arg-type]


def kinds(result: Tick) -> list[tuple[str, str]]:
    return [(type(a).__name__, a.job) for a in result.actions]


def test_s1_etl_cycle_launches_at_its_slot_with_firing_id() -> None:
    result = tick(opts(run_update_stats="false"), "2026-11-23 06:30")
    launch = result.of(Launch)[0]
    assert isinstance(launch, Launch)
    assert (launch.job, launch.planned_at) == (EXTRACT, at("2026-11-23 06:30"))
    assert launch.firing_id == firing_id(EXTRACT, at("2026-11-23 06:30"))
    assert launch.firing_id == "Job_ExtractICON:2026-11-23T05:30:00+00:00"
    assert result.cursors[EXTRACT] == at("2026-11-23 06:30")


def test_s1_nothing_between_slots_and_nothing_outside_span() -> None:
    options = opts(run_update_stats="false", run_maintain="false")
    assert tick(options, "2026-11-23 06:45").actions == ()
    assert tick(options, "2026-11-23 02:00").actions == ()


def test_s1_slot_during_running_cycle_holds_one_pending_cycle() -> None:
    options = opts(run_update_stats="false")
    running = (ActiveRun(7, EXTRACT, "scheduled"),)
    result = tick(options, "2026-11-23 07:00", running=running)
    assert kinds(result) == [("Hold", EXTRACT)]
    assert "previous ETL cycle still running (S1)" in result.actions[0].reason
    # A second slot while that cycle is still pending is not queued again.
    waiting = (WaitingRun(8, EXTRACT, "scheduled", at("2026-11-23 07:00")),)
    result = tick(options, "2026-11-23 07:30", running=running, waiting=waiting)
    assert kinds(result) == [("Skip", EXTRACT)]
    assert "already pending as run 8" in result.actions[0].reason


def test_s1_pending_cycle_starts_as_soon_as_previous_cycle_ends() -> None:
    options = opts(run_update_stats="false")
    waiting = (WaitingRun(8, EXTRACT, "scheduled", at("2026-11-23 07:00")),)
    cycle = CycleView(at("2026-11-23 06:30"), "Completed", "Completed")
    result = tick(options, "2026-11-23 07:12", waiting=waiting, last_cycle=cycle)
    assert result.of(Release) == [
        Release(8, EXTRACT, "previous cycle and maintenance ended (S1, S5)")
    ]


def test_s3_transform_starts_when_extract_completes() -> None:
    options = opts(run_update_stats="false")
    cycle = CycleView(at("2026-11-23 06:30"), "Completed with warnings", None)
    result = tick(options, "2026-11-23 06:41", last_cycle=cycle)
    launch = result.of(Launch)[0]
    assert isinstance(launch, Launch)
    assert launch.job == TRANSFORM and launch.firing_id == firing_id(TRANSFORM, cycle.planned_at)
    # Failed Extract: no Transform for that cycle; Transform already ran: nothing.
    assert (
        tick(
            options, "2026-11-23 06:41", last_cycle=CycleView(cycle.planned_at, "Failed", None)
        ).actions
        == ()
    )
    assert (
        tick(
            options,
            "2026-11-23 06:41",
            last_cycle=CycleView(cycle.planned_at, "Completed", "Running"),
        ).actions
        == ()
    )


def test_s2_update_stats_already_running_is_skipped_not_queued() -> None:
    result = tick(opts(), "2026-11-23 10:10", running=(ActiveRun(3, UPDATE_STATS, "scheduled"),))
    assert kinds(result) == [("Skip", UPDATE_STATS)]


def test_s4_maintenance_waits_for_running_etl_then_starts() -> None:
    options = opts(run_update_stats="false")
    running = (ActiveRun(5, TRANSFORM, "scheduled"),)
    result = tick(options, "2026-11-23 03:00", running=running)
    assert kinds(result) == [("Hold", MAINTAIN)]
    assert "waiting for Job_TransformGIM run 5 (S4)" in result.actions[0].reason
    waiting = (WaitingRun(9, MAINTAIN, "scheduled", at("2026-11-23 03:00")),)
    cycle = CycleView(at("2026-11-23 00:30"), "Completed", "Completed")
    result = tick(options, "2026-11-23 03:07", waiting=waiting, last_cycle=cycle)
    assert kinds(result) == [("Release", MAINTAIN)]


def test_s4_maintenance_waits_for_owed_transform() -> None:
    cycle = CycleView(at("2026-11-23 00:30"), "Completed", None)
    result = tick(opts(run_update_stats="false"), "2026-11-23 03:00", last_cycle=cycle)
    assert kinds(result) == [("Launch", TRANSFORM), ("Hold", MAINTAIN)]


def test_s4_scheduled_maintenance_running_holds_other_launches() -> None:
    options = opts(run_export="true", export_schedule="20 3")
    running = (ActiveRun(4, MAINTAIN, "scheduled"),)
    result = tick(options, "2026-11-23 03:20", running=running)
    assert ("Hold", EXPORT) in kinds(result)
    assert "waiting for maintenance run 4 (S8)" in result.of(Hold)[0].reason


def test_s5_etl_due_preempts_scheduled_maintenance() -> None:
    options = opts(run_update_stats="false")
    running = (ActiveRun(4, MAINTAIN, "scheduled"),)
    result = tick(options, "2026-11-23 06:30", running=running)
    assert kinds(result) == [("Stop", MAINTAIN), ("Hold", EXTRACT)]
    stop = result.of(Stop)[0]
    assert isinstance(stop, Stop) and stop.run_id == 4 and stop.kind == StopKind.PREEMPTED
    assert stop.reason == (
        "preempted by the ETL cycle planned at 2026-11-23 06:30 (S5); "
        "the steps left resume at the next maintenance"
    )
    # Once maintenance has stopped, the held cycle starts.
    waiting = (WaitingRun(11, EXTRACT, "scheduled", at("2026-11-23 06:30")),)
    assert kinds(tick(options, "2026-11-23 06:31", waiting=waiting)) == [("Release", EXTRACT)]


def test_s5_stop_is_requested_once() -> None:
    running = (ActiveRun(4, MAINTAIN, "scheduled", stopping=True),)
    waiting = (WaitingRun(11, EXTRACT, "scheduled", at("2026-11-23 06:30")),)
    result = tick(
        opts(run_update_stats="false"), "2026-11-23 07:00", running=running, waiting=waiting
    )
    assert kinds(result) == [("Skip", EXTRACT)]  # already pending; no second Stop


def test_s6_update_stats_runs_beside_etl_but_is_skipped_during_scheduled_maintenance() -> None:
    beside_etl = tick(opts(), "2026-11-23 10:10", running=(ActiveRun(1, EXTRACT, "scheduled"),))
    assert kinds(beside_etl) == [("Launch", UPDATE_STATS)]
    during = tick(opts(), "2026-11-23 03:10", running=(ActiveRun(4, MAINTAIN, "scheduled"),))
    assert kinds(during) == [("Skip", UPDATE_STATS)]
    assert "(S6)" in during.actions[0].reason


def test_s6_maintenance_does_not_wait_for_update_stats() -> None:
    result = tick(
        opts(update_stats_schedule="0 0"),
        "2026-11-23 03:00",
        running=(ActiveRun(2, UPDATE_STATS, "scheduled"),),
    )
    assert kinds(result) == [("Launch", MAINTAIN)]


def agg_opts(**overrides: str) -> ScheduleOptions:
    return opts(run_aggregates="true", run_update_stats="false", **overrides)


def test_s7_window_opens_aggregation_and_restarts_it_within_a_tick() -> None:
    options = agg_opts()
    opened = tick(
        options,
        "2026-11-23 04:00",
        cursors=cursors_at(at("2026-11-23 03:59:59"), EXTRACT, MAINTAIN),
    )
    launch = opened.of(Launch)[0]
    assert isinstance(launch, Launch) and launch.job == AGGREGATE and launch.trigger == "scheduled"
    assert opened.cursors[AGGREGATE] == at("2026-11-23 04:00")
    # Later in the window it stopped (crash, operator): the scheduler starts it again.
    later = tick(
        options, "2026-11-23 15:10", cursors={**opened.cursors, EXTRACT: at("2026-11-23 15:00")}
    )
    restart = later.of(Launch)[0]
    assert isinstance(restart, Launch) and restart.trigger == "restart"
    assert restart.firing_id != launch.firing_id


def test_s7_window_end_stops_aggregation_gracefully() -> None:
    result = tick(
        agg_opts(),
        "2026-11-24 03:00:01",
        running=(ActiveRun(6, AGGREGATE, "scheduled"),),
        cursors=cursors_at(at("2026-11-24 03:00:01"), EXTRACT, MAINTAIN),
    )
    assert kinds(result) == [("Stop", AGGREGATE)]
    assert "window ended (S7)" in result.actions[0].reason
    assert result.of(Stop)[0].kind == StopKind.WINDOW_END  # type: ignore[union-attr]


def test_s7_maintenance_inside_window_pauses_and_resumes_aggregation() -> None:
    options = agg_opts(aggregate_duration="24:00")
    running = (ActiveRun(6, AGGREGATE, "scheduled"),)
    due = tick(options, "2026-11-23 03:00", running=running)
    assert kinds(due) == [("Stop", AGGREGATE), ("Hold", MAINTAIN)]
    assert "paused for maintenance" in due.actions[0].reason
    assert due.of(Stop)[0].kind == StopKind.MAINTENANCE  # type: ignore[union-attr]
    # Maintenance runs: aggregation is not restarted.
    during = tick(
        options,
        "2026-11-23 03:30",
        running=(ActiveRun(9, MAINTAIN, "scheduled"),),
        cursors={**due.cursors, AGGREGATE: at("2026-11-22 04:00")},
    )
    assert during.actions == ()
    # Maintenance ended, still inside the window: aggregation resumes.
    after = tick(
        options, "2026-11-23 03:45", cursors={**due.cursors, AGGREGATE: at("2026-11-22 04:00")}
    )
    assert kinds(after) == [("Launch", AGGREGATE)]


def test_s8_export_runs_beside_etl() -> None:
    options = opts(run_export="true", run_update_stats="false")
    result = tick(options, "2026-11-23 08:20", running=(ActiveRun(1, EXTRACT, "scheduled"),))
    assert kinds(result) == [("Launch", EXPORT)]


def test_s9_run_scheduler_false_launches_nothing_and_moves_cursors() -> None:
    result = tick(opts(run_scheduler="false", run_aggregates="true"), "2026-11-23 06:30")
    assert result.actions == ()
    assert result.cursors[EXTRACT] == at("2026-11-23 06:30")
    assert all(value is None for value in result.next_runs.values())


def test_s9_run_flags_stop_their_job_only() -> None:
    result = tick(opts(run_maintain="false", run_update_stats="false"), "2026-11-23 03:00")
    assert result.actions == () and result.next_runs[MAINTAIN] is None
    assert result.next_runs[EXTRACT] == at("2026-11-23 06:30")


def test_s12_after_downtime_one_immediate_cycle_inside_span() -> None:
    options = opts(run_update_stats="false")
    result = tick(options, "2026-11-23 11:07", cursors=cursors_at(at("2026-11-23 08:00")))
    assert kinds(result) == [("Launch", EXTRACT)]
    assert result.actions[0].planned_at == at("2026-11-23 11:00")  # the latest missed slot only


def test_s12_after_downtime_outside_span_no_cycle_but_visible_skip() -> None:
    options = opts(run_update_stats="false", run_maintain="false")
    result = tick(options, "2026-11-23 05:00", cursors=cursors_at(at("2026-11-22 20:00")))
    assert kinds(result) == [("Skip", EXTRACT)]
    assert "(S12)" in result.actions[0].reason


def test_s12_missed_maintenance_of_today_runs_once_if_still_allowed() -> None:
    options = opts(run_update_stats="false")
    allowed = tick(options, "2026-11-23 05:10", cursors=cursors_at(at("2026-11-23 02:00")))
    assert ("Launch", MAINTAIN) in kinds(allowed)
    too_late = tick(options, "2026-11-23 09:10", cursors=cursors_at(at("2026-11-23 02:00")))
    assert ("Skip", MAINTAIN) in kinds(too_late)


def test_s12_missed_export_of_an_earlier_day_is_skipped() -> None:
    options = opts(run_export="true", run_update_stats="false", run_maintain="false")
    result = tick(options, "2026-11-23 00:25", cursors=cursors_at(at("2026-11-22 12:00")))
    exports = [a for a in result.actions if a.job == EXPORT]
    assert [type(a).__name__ for a in exports] == ["Launch"]  # 00:20 today, 5 min late
    result = tick(options, "2026-11-23 06:00", cursors=cursors_at(at("2026-11-22 12:00")))
    assert [type(a).__name__ for a in result.actions if a.job == EXPORT] == ["Launch"]
    result = tick(options, "2026-11-23 00:10", cursors=cursors_at(at("2026-11-22 12:00")))
    assert [type(a).__name__ for a in result.actions if a.job == EXPORT] == ["Skip"]


def test_s13_scheduled_launches_wait_for_manual_maintenance() -> None:
    options = opts(run_export="true", export_schedule="30 6")
    running = (ActiveRun(12, MAINTAIN, "manual"),)
    result = tick(options, "2026-11-23 06:30", running=running)
    assert sorted(kinds(result)) == [("Hold", EXPORT), ("Hold", EXTRACT), ("Hold", UPDATE_STATS)]
    assert not result.of(Stop)  # manual maintenance is not preempted
    assert {a.job: a.reason for a in result.actions} == {
        job: "waiting for manual maintenance run 12 (S13)"
        for job in (EXPORT, EXTRACT, UPDATE_STATS)
    }


def test_c2_configuration_error_blocks_every_start_and_names_the_item() -> None:
    refusal = "configuration check failed: schema: at 0000, head is 0001"
    waiting = (WaitingRun(8, EXTRACT, "scheduled", at("2026-11-23 06:00")),)
    result = tick(opts(), "2026-11-23 06:30", refusal=refusal, waiting=waiting)
    assert {type(a) for a in result.actions} == {Skip}
    assert all(a.reason == refusal for a in result.actions)


def test_c2_an_error_that_spares_maintenance_blocks_every_other_job() -> None:
    """A short calendar (C2) blocks every launch but Job_MaintainGIM, which fills it."""

    def refusal(job: str) -> str | None:
        return None if job == MAINTAIN else "configuration check failed: calendar too short"

    options = opts(run_export="true", export_schedule="0 3")
    result = tick(options, "2026-11-23 03:00", refusal=refusal)  # type: ignore[arg-type]
    assert kinds(result) == [("Launch", MAINTAIN), ("Skip", UPDATE_STATS), ("Skip", EXPORT)]
    assert all("calendar too short" in a.reason for a in result.of(Skip))
    waiting = (WaitingRun(8, EXPORT, "manual"), WaitingRun(9, MAINTAIN, "manual"))
    released = tick(opts(), "2026-11-23 12:01", refusal=refusal, waiting=waiting)  # type: ignore[arg-type]
    assert kinds(released) == [("Release", MAINTAIN)]


def test_m3_manual_aggregation_paused_for_maintenance_resumes_after_it_once() -> None:
    """run-aggregates=false: a manual aggregation runs until someone stops it; scheduled
    maintenance pauses it (S7) and it resumes when maintenance is over (M3)."""
    options = opts(run_update_stats="false")
    manual = (ActiveRun(6, AGGREGATE, "manual"),)
    due = tick(options, "2026-11-23 03:00", running=manual)
    assert kinds(due) == [("Stop", AGGREGATE), ("Hold", MAINTAIN)]
    assert due.of(Stop)[0].kind == StopKind.MAINTENANCE  # type: ignore[union-attr]
    during = tick(
        options,
        "2026-11-23 03:20",
        running=(ActiveRun(9, MAINTAIN, "scheduled"),),
        paused_aggregation=6,
    )
    assert during.actions == ()
    waiting = tick(
        options,
        "2026-11-23 03:01",
        waiting=(WaitingRun(9, MAINTAIN, "scheduled"),),
        running=(ActiveRun(3, EXTRACT, "manual"),),
        paused_aggregation=6,
    )
    assert waiting.actions == ()  # maintenance still waiting to start: not yet
    after = tick(options, "2026-11-23 03:40", paused_aggregation=6)
    assert kinds(after) == [("Launch", AGGREGATE)]
    resume = after.of(Launch)[0]
    assert isinstance(resume, Launch) and resume.trigger == "restart"
    assert resume.firing_id == "Job_AggregateGIM:resume-of-run-6"  # once per paused run (S11)
    assert "resumes aggregation run 6" in resume.reason and "(M3)" in resume.reason
    blocked = tick(options, "2026-11-23 03:40", paused_aggregation=6, refusal="config broken")
    assert blocked.actions == ()  # C2


def test_m3_run_aggregates_true_hands_a_manual_aggregation_to_the_window_rules() -> None:
    manual = (ActiveRun(6, AGGREGATE, "manual"),)
    outside = tick(
        agg_opts(),
        "2026-11-24 03:30",
        running=manual,
        cursors=cursors_at(at("2026-11-24 03:30"), EXTRACT, MAINTAIN),
    )
    assert kinds(outside) == [("Stop", AGGREGATE)]
    assert outside.of(Stop)[0].kind == StopKind.WINDOW_END  # type: ignore[union-attr]
    inside = tick(
        agg_opts(),
        "2026-11-23 12:00",
        running=manual,
        cursors=cursors_at(at("2026-11-23 12:00"), EXTRACT, MAINTAIN, AGGREGATE),
    )
    assert inside.actions == ()  # inside the window it is the window's run
    # Paused for maintenance with run-aggregates=true: the window rules restart it, not M3.
    window = tick(
        agg_opts(),
        "2026-11-24 03:30",
        paused_aggregation=6,
        cursors=cursors_at(at("2026-11-24 03:30"), EXTRACT, MAINTAIN),
    )
    assert window.actions == ()


def test_m5_manual_maintenance_waits_for_every_other_run_and_is_released_after() -> None:
    waiting = (WaitingRun(20, MAINTAIN, "manual"),)
    busy = tick(
        opts(run_update_stats="false"),
        "2026-11-23 12:05",
        waiting=waiting,
        running=(ActiveRun(3, UPDATE_STATS, "manual"),),
    )
    assert busy.actions == ()
    free = tick(opts(run_update_stats="false"), "2026-11-23 12:05", waiting=waiting)
    assert free.of(Release) == [Release(20, MAINTAIN, "no other run active (M5)")]


def test_next_runs_in_sample_schedule() -> None:
    result = tick(agg_opts(run_export="true"), "2026-11-23 01:00")
    assert result.next_runs == {
        EXTRACT: at("2026-11-23 06:30"),
        TRANSFORM: None,
        AGGREGATE: at("2026-11-23 04:00"),
        MAINTAIN: at("2026-11-23 03:00"),
        UPDATE_STATS: None,
        EXPORT: at("2026-11-23 08:20"),
        BACKFILL: None,
    }


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(opts(), datetime(2026, 11, 23, 6, 30), SchedulerState())
