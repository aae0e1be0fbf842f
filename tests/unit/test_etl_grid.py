"""The ETL grid of S1 in local time, spans across midnight, and S10."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gim_tasks.schedule.etl import EtlGrid
from gim_tasks.schedule.localtime import resolve, wall, zone

ZONES = [
    "GMT",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/Santiago",
]
SAMPLE = EtlGrid(time(6, 30), time(0, 30), 30)  # the seed's sample schedule


def slots(grid: EtlGrid, tz_name: str, start: datetime, end: datetime) -> list[datetime]:
    tz, result, current = zone(tz_name), [], start
    while (current := grid.next_after(current, tz)) < end:
        result.append(current)
    return result


def test_s1_sample_schedule_runs_37_cycles_from_0630_to_0030() -> None:
    tz = zone("Europe/Berlin")
    start = resolve(datetime(2026, 11, 23, 6, 0), tz)
    day = slots(SAMPLE, "Europe/Berlin", start, start + timedelta(days=1))
    local = [wall(s, tz).strftime("%H:%M") for s in day]
    assert len(local) == 37
    assert local[0] == "06:30" and local[-1] == "00:30"
    assert all(b - a == timedelta(minutes=30) for a, b in zip(day, day[1:], strict=False))
    assert not any("00:31" <= t < "06:30" for t in local)


def test_s1_span_within_a_day_and_frequency_not_dividing_it_final_cycle_at_end_time() -> None:
    grid = EtlGrid(time(8, 0), time(9, 0), 25)  # 08:00, 08:25, 08:50, and the final at 09:00
    start = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    assert [
        wall(s, zone("GMT")).strftime("%H:%M")
        for s in slots(grid, "GMT", start, start + timedelta(days=1))
    ] == ["08:00", "08:25", "08:50", "09:00"]
    assert grid.short_gap == 10


def test_s1_final_cycle_begins_at_end_time_across_midnight() -> None:
    """GIM: etl-end-time is "the time of day that the final ETL cycle begins"; with 25 minutes
    from 06:30 the grid reaches 00:25, and the final cycle still begins at 00:30."""
    grid = EtlGrid(time(6, 30), time(0, 30), 25)
    tz = zone("Europe/Berlin")
    start = resolve(datetime(2026, 11, 23, 6, 0), tz)
    local = [
        wall(s, tz).strftime("%H:%M")
        for s in slots(grid, "Europe/Berlin", start, start + timedelta(days=1))
    ]
    assert local[0] == "06:30" and local[-3:] == ["00:00", "00:25", "00:30"]
    assert len(local) == 1080 // 25 + 2
    assert grid.short_gap == 5
    assert SAMPLE.short_gap is None and EtlGrid(time(6, 0), time(6, 0), 45).short_gap is None


def test_s1_equal_start_and_end_means_round_the_clock() -> None:
    grid = EtlGrid(time(6, 0), time(6, 0), 45)
    assert grid.round_the_clock and grid.covers(time(3, 0))
    start = datetime(2026, 11, 23, 6, 0, tzinfo=UTC) - timedelta(seconds=1)
    day = slots(grid, "GMT", start, start + timedelta(days=1))
    local = [wall(s, zone("GMT")).strftime("%H:%M") for s in day]
    assert len(day) == 32  # 06:00 + k*45 for k = 0..31; 05:15 is the day's final cycle
    assert local[0] == "06:00" and local[-1] == "05:15"


def test_s10_etl_grid_across_spring_gap_and_fall_back() -> None:
    tz = zone("Europe/Berlin")
    grid = EtlGrid(time(0, 0), time(23, 30), 30)
    spring = slots(
        grid,
        "Europe/Berlin",
        resolve(datetime(2026, 3, 29, 1, 15), tz),
        resolve(datetime(2026, 3, 29, 4, 0), tz),
    )
    assert [s.astimezone(tz).strftime("%H:%M %Z") for s in spring] == [
        "01:30 CET",
        "03:00 CEST",
        "03:30 CEST",
    ]  # 02:00 and 02:30 collapse into 03:00
    autumn = slots(
        grid,
        "Europe/Berlin",
        resolve(datetime(2026, 10, 25, 1, 15), tz),
        resolve(datetime(2026, 10, 25, 3, 45), tz),
    )
    assert [s.astimezone(tz).strftime("%H:%M %Z") for s in autumn] == [
        "01:30 CEST",
        "02:00 CEST",
        "02:30 CEST",
        "03:00 CET",
        "03:30 CET",
    ]


def test_covers_span_across_midnight() -> None:
    assert SAMPLE.covers(time(6, 30)) and SAMPLE.covers(time(0, 30)) and SAMPLE.covers(time(23, 0))
    assert not SAMPLE.covers(time(3, 0)) and not SAMPLE.covers(time(0, 31))


clock = st.builds(time, st.integers(0, 23), st.integers(0, 59))
instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)


def _oracle_offsets(start: time, end: time, frequency: int) -> list[int]:
    """S1 read literally: from the start every ``frequency`` minutes while not past the end,
    and the final cycle at the end time even when it is off that grid."""
    first, last = start.hour * 60 + start.minute, end.hour * 60 + end.minute
    span = (last - first) % 1440 or 1440
    found, minute = [], 0
    while minute < span or (minute == span and span < 1440):
        found.append(minute)
        minute += frequency
    if span < 1440 and found[-1] != span:
        found.append(span)
    return found


@settings(max_examples=300, deadline=None)
@given(
    start=clock,
    end=clock,
    frequency=st.integers(1, 1440),
    tz_name=st.sampled_from(ZONES),
    instant=instants,
)
def test_property_slots_match_oracle_inside_span_on_local_grid(
    start: time, end: time, frequency: int, tz_name: str, instant: datetime
) -> None:
    grid, tz = EtlGrid(start, end, frequency), zone(tz_name)
    horizon = instant + timedelta(days=2)
    anchor_day = wall(instant, tz).date() - timedelta(days=1)
    expected = sorted(
        {
            fired
            for day in range(4)
            for minutes in _oracle_offsets(start, end, frequency)
            if instant
            < (
                fired := resolve(
                    datetime.combine(anchor_day + timedelta(days=day), start)
                    + timedelta(minutes=minutes),
                    tz,
                )
            )
            < horizon
        }
    )
    got = slots(grid, tz_name, instant, horizon)
    assert got == expected
    assert all(a < b for a, b in zip(got, got[1:], strict=False))
    for fired in got:
        local = wall(fired, tz)
        # Inside the span, unless moved to the end of a DST gap (then a span time lies inside
        # the gap just before it: a gap is at most two hours).
        assert grid.covers(local.time()) or any(
            grid.covers((local - timedelta(minutes=back)).time()) for back in range(1, 121)
        )
