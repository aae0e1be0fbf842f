"""Operators' holds, pure (SPEC P1-P3): blackout windows in the schedule's zone across DST,
weekly windows that wrap the week, month-end days, pauses that end at their ``until``, and the
engine's decisions with them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gim_tasks.lifecycle import Verdict
from gim_tasks.options.values import schedule_from_ini
from gim_tasks.schedule import plan
from gim_tasks.schedule.engine import Skip, decide
from gim_tasks.schedule.holds import Blackout, Holds, Pause
from gim_tasks.schedule.localtime import resolve, wall, zone
from gim_tasks.schedule.state import SchedulerState

TZ = zone("Europe/Berlin")
OPTIONS = schedule_from_ini(
    "[schedule]\ntimezone = Europe/Berlin\nrun-export = true\nexport-schedule = 0,30 *\n"
)
EXPORT = "Job_ExportGIM"


def local(text: str) -> datetime:
    return resolve(datetime.fromisoformat(text), TZ)


def test_p3_a_blackout_over_the_spring_forward_night_holds_exactly_the_firings_inside() -> None:
    """2027-03-28 in Europe/Berlin: 02:00 becomes 03:00. A window from 01:00 to 04:00 local
    is two real hours; of the export firings every 30 minutes it holds 01:00, 01:30, 03:00
    and 03:30 (there is no 02:00 or 02:30), through the engine as through the window."""
    window = Blackout("dst-night", "once", "storage move", starts="2027-03-28T01:00",
                      ends="2027-03-28T04:00")  # fmt: skip
    holds = Holds(blackouts=(window,))
    events = [
        e.at.astimezone(UTC)  # instants: arithmetic on Berlin wall times would cross the gap
        for e in plan.plan(OPTIONS, local("2027-03-27T22:00"), local("2027-03-28T06:00"))
        if e.job == EXPORT
    ]
    held = [e for e in events if holds.blackout_of(EXPORT, "export", e, TZ) is not None]
    assert [wall(e, TZ).strftime("%H:%M") for e in held] == ["01:00", "01:30", "03:00", "03:30"]
    assert held[-1].astimezone(UTC) - held[0].astimezone(UTC) == timedelta(hours=1, minutes=30)
    for instant in events:
        state = SchedulerState(cursors={EXPORT: instant - timedelta(seconds=1)}, holds=holds)
        tick = decide(OPTIONS, instant + timedelta(seconds=1), state)
        decided = [a for a in tick.actions if a.job == EXPORT]
        assert len(decided) == 1, decided
        if instant in held:
            assert isinstance(decided[0], Skip) and decided[0].operator == Verdict.BLACKOUT
            assert decided[0].reason == "in blackout 'dst-night': storage move (P3)"
        else:  # launched, or held by maintenance (S8): the window holds nothing else
            assert not isinstance(decided[0], Skip), decided


def test_p3_a_start_inside_the_dst_gap_is_the_first_instant_after_it() -> None:
    window = Blackout("gap", "once", "r", starts="2027-03-28T02:30", ends="2027-03-28T05:00")
    inside = Holds(blackouts=(window,))
    assert inside.blackout_of(EXPORT, "export", local("2027-03-28T03:00"), TZ) is window
    assert inside.blackout_of(EXPORT, "export", local("2027-03-28T01:59"), TZ) is None


def test_p3_weekly_windows_wrap_the_week_and_month_end_counts_local_days() -> None:
    weekend = Blackout("weekend", "weekly", "r", weekly="Sat 22:00-Mon 02:00")
    assert weekend.covers(local("2026-12-05T22:00"), TZ)  # Saturday
    assert weekend.covers(local("2026-12-07T01:59"), TZ)  # Monday
    assert not weekend.covers(local("2026-12-07T02:00"), TZ)
    assert not weekend.covers(local("2026-12-05T21:59"), TZ)
    close = Blackout("close", "month-end", "r", days=2)
    assert close.covers(local("2027-02-27T00:00"), TZ) and close.covers(
        local("2027-02-28T23:59"), TZ
    )
    assert not close.covers(local("2027-02-26T23:59"), TZ)
    assert not close.covers(local("2027-03-01T00:00"), TZ)
    # A local day, not a UTC one: 2027-03-01 00:30 in Berlin is still February in UTC.
    assert not close.covers(local("2027-03-01T00:30"), TZ)
    # Default jobs: every job but maintenance.
    assert close.names(EXPORT, "export") and not close.names("Job_MaintainGIM", "maintenance")


def test_p1_a_pause_holds_the_firings_before_its_until_and_a_job_keeps_its_own() -> None:
    until = datetime(2026, 12, 7, 5, tzinfo=UTC)
    holds = Holds(
        {"*": Pause("*", "all", "a", until), EXPORT: Pause(EXPORT, "own", "b")},
    )
    assert holds.pause_of("Job_ExtractICON", until - timedelta(minutes=1)) is not None
    assert holds.pause_of("Job_ExtractICON", until) is None
    assert holds.pause_of(EXPORT, until + timedelta(days=9)).reason == "own"  # type: ignore[union-attr]


def test_p3_the_timeline_shades_each_period_of_a_window_as_instants() -> None:
    start, end = local("2026-12-01T00:00"), local("2027-01-04T00:00")
    weekend = Blackout("weekend", "weekly", "r", weekly="Sat 22:00-Mon 02:00")
    periods = weekend.intervals(start, end, TZ)
    assert [wall(a, TZ).strftime("%a %d %H:%M") for a, _ in periods] == [
        "Sat 05 22:00", "Sat 12 22:00", "Sat 19 22:00", "Sat 26 22:00", "Sat 02 22:00",
    ]  # fmt: skip
    assert all(b - a == timedelta(hours=28) for a, b in periods[:-1])  # the last is cut
    close = Blackout("close", "month-end", "r", days=2)
    assert [(wall(a, TZ).day, wall(b, TZ).day) for a, b in close.intervals(start, end, TZ)] == [
        (30, 1)
    ]  # December's 30th and 31st: in the period [Dec 1, Jan 4)
    # Across the spring-forward night the window keeps its wall times: 25 real hours shorter.
    dst = Blackout("dst", "weekly", "r", weekly="Sat 12:00-Sun 12:00")
    ((a, b),) = dst.intervals(local("2027-03-27T00:00"), local("2027-03-29T00:00"), TZ)
    assert b.astimezone(UTC) - a.astimezone(UTC) == timedelta(hours=23)
