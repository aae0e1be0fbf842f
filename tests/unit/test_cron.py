"""Cron parsing and arithmetic, with S10 (DST gap and fall-back) in wall-clock time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gim_tasks.schedule.cron import CronError, parse_cron
from gim_tasks.schedule.localtime import resolve, wall, zone

BERLIN = zone("Europe/Berlin")
ZONES = [
    "GMT",
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Pacific/Chatham",
]


def firings(expression: str, tz_name: str, start: datetime, count: int) -> list[datetime]:
    tz, cron, result = zone(tz_name), parse_cron(expression), []
    current = start
    for _ in range(count):
        nxt = cron.next_after(current, tz)
        assert nxt is not None
        result.append(nxt)
        current = nxt
    return result


@pytest.mark.parametrize(
    ("expression", "minutes_of_day"),
    [
        ("0/10 *", tuple(range(0, 1440, 10))),
        ("30 2", (150,)),
        ("20 0,8,16", (20, 500, 980)),
        ("0 4", (240,)),
        ("5-15/5 1", (65, 70, 75)),
        ("*/30 22-23", (1320, 1350, 1380, 1410)),
        ("0 9 * * 1-5", (540,)),
    ],
)
def test_parse_two_and_five_fields(expression: str, minutes_of_day: tuple[int, ...]) -> None:
    assert parse_cron(expression).minutes_of_day == minutes_of_day


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0/10", "has 1 field(s); expected 2"),
        ("0 0 0", "has 3 field(s)"),
        ("0 0 * * * *", "has 6 field(s)"),  # no seconds field (croniter would take it)
        # croniter decides what is valid; the message names the field and what is allowed
        ("60 *", "minute field '60' is not valid; allowed: '*', N, A-B"),
        ("0 24", "hour field '24' is not valid; allowed: '*', N, A-B"),
        ("x *", "minute field 'x' is not valid"),
        ("10-5 *", "minute range 10-5 runs backwards"),  # croniter would wrap round
        ("0/0 *", "minute field '0/0' is not valid"),
        ("1,,2 *", "minute field '1,,2' is not valid"),
        ("0 0 32 * *", "day-of-month field '32' is not valid"),
        (
            "0 0 * 13 *",
            "month field '13' is not valid; allowed: '*', N, A-B, */S, N/S, A-B/S "
            "or comma-separated lists of these, with values 1-12",
        ),
        ("0 0 * * 8", "day-of-week field '8' is not valid"),
        ("0 0 * jan *", "month field 'jan' is not valid"),  # names: not a GIM form
        ("0 0 L * *", "day-of-month field 'L' is not valid"),
    ],
)
def test_parse_errors_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=re.escape(message)):
        parse_cron(expression)


def test_five_field_weekdays_and_sunday_as_0_or_7() -> None:
    start = datetime(2026, 11, 22, 12, tzinfo=UTC)  # a Sunday
    weekdays = [
        f.astimezone(BERLIN).weekday() for f in firings("0 9 * * 1-5", "Europe/Berlin", start, 5)
    ]
    assert weekdays == [0, 1, 2, 3, 4]
    assert parse_cron("0 9 * * 0").weekdays == parse_cron("0 9 * * 7").weekdays == frozenset({6})


def test_s10_daily_job_in_fall_back_night_fires_once() -> None:
    # Europe/Berlin 2026-10-25: 03:00 CEST -> 02:00 CET, so 02:30 happens twice.
    days = firings("30 2", "Europe/Berlin", datetime(2026, 10, 23, 12, tzinfo=UTC), 4)
    assert [f.astimezone(BERLIN).strftime("%m-%d %H:%M %Z") for f in days] == [
        "10-24 02:30 CEST",
        "10-25 02:30 CEST",
        "10-26 02:30 CET",
        "10-27 02:30 CET",
    ]


def test_s10_every_ten_minutes_across_fall_back_fires_each_wall_time_once() -> None:
    start = datetime(2026, 10, 24, 23, 55, tzinfo=UTC)  # 01:55 CEST
    result = firings("0/10 *", "Europe/Berlin", start, 12)
    walls = [wall(f, BERLIN).strftime("%H:%M") for f in result]
    assert walls == [
        "02:00",
        "02:10",
        "02:20",
        "02:30",
        "02:40",
        "02:50",
        "03:00",
        "03:10",
        "03:20",
        "03:30",
        "03:40",
        "03:50",
    ]
    assert result[6] - result[5] == timedelta(hours=1, minutes=10)  # the repeated hour is skipped


def test_s10_time_in_spring_gap_fires_at_first_instant_after_it() -> None:
    # Europe/Berlin 2026-03-29: 02:00 CET -> 03:00 CEST; 02:30 does not exist.
    days = firings("30 2", "Europe/Berlin", datetime(2026, 3, 27, 12, tzinfo=UTC), 3)
    assert [f.astimezone(BERLIN).strftime("%m-%d %H:%M %Z") for f in days] == [
        "03-28 02:30 CET",
        "03-29 03:00 CEST",
        "03-30 02:30 CEST",
    ]


def test_s10_gap_firings_collapse_into_one() -> None:
    start = datetime(2026, 3, 29, 0, 45, tzinfo=UTC)  # 01:45 CET
    result = firings("0/15 *", "Europe/Berlin", start, 3)
    assert [f.astimezone(BERLIN).strftime("%H:%M %Z") for f in result] == [
        "03:00 CEST",
        "03:15 CEST",
        "03:30 CEST",
    ]


def test_latest_at_or_before_collapses_missed_firings() -> None:
    cron = parse_cron("0/10 *")
    now = datetime(2026, 11, 22, 12, 34, tzinfo=UTC)
    latest = cron.latest_at_or_before(now, zone("UTC"), not_before=now - timedelta(days=5))
    assert latest == datetime(2026, 11, 22, 12, 30, tzinfo=UTC)
    assert cron.latest_at_or_before(now, zone("UTC"), not_before=latest) is None


def test_describe_in_words() -> None:
    assert parse_cron("0/10 *").describe() == "every 10 min"
    assert parse_cron("30 2").describe() == "daily at 02:30"
    assert parse_cron("20 0,8,16").describe() == "daily at 00:20, 08:20, 16:20"
    assert parse_cron("15 *").describe() == "hourly at :15"


cron_fields = st.builds(
    lambda minutes, hours: (
        f"{','.join(map(str, sorted(minutes)))} {','.join(map(str, sorted(hours)))}"
    ),
    st.sets(st.integers(0, 59), min_size=1, max_size=6),
    st.sets(st.integers(0, 23), min_size=1, max_size=6),
)
instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(expression=cron_fields, tz_name=st.sampled_from(ZONES), start=instants)
def test_property_firings_sorted_on_grid_and_unique_wall_times(
    expression: str, tz_name: str, start: datetime
) -> None:
    tz, cron = zone(tz_name), parse_cron(expression)
    result = firings(expression, tz_name, start, 8)
    assert result[0] > start
    assert all(a < b for a, b in zip(result, result[1:], strict=False))
    for fired in result:
        local = wall(fired, tz)
        on_grid = local.hour * 60 + local.minute in cron.minutes_of_day and local.second == 0
        # Off the grid only at the end of a DST gap: some grid time of that day was skipped.
        if not on_grid:
            gap_times = [
                local.replace(hour=m // 60, minute=m % 60, second=0) for m in cron.minutes_of_day
            ]
            assert any(resolve(g, tz) == fired and g < local for g in gap_times), local
    walls = [wall(f, tz) for f in result]
    assert len(set(walls)) == len(walls)  # no wall time fires twice (S10)


@settings(max_examples=200, deadline=None)
@given(expression=cron_fields, tz_name=st.sampled_from(ZONES), start=instants)
def test_property_next_after_matches_brute_force_oracle(
    expression: str, tz_name: str, start: datetime
) -> None:
    """Every matching wall time of three days, resolved by S10, and nothing else."""
    tz, cron = zone(tz_name), parse_cron(expression)
    end = start + timedelta(days=3)
    first_day = wall(start, tz).date() - timedelta(days=1)
    expected = sorted(
        {
            fired
            for offset in range(6)
            for minute in cron.minutes_of_day
            if start
            < (
                fired := resolve(
                    datetime.combine(first_day + timedelta(days=offset), datetime.min.time())
                    + timedelta(minutes=minute),
                    tz,
                )
            )
            <= end
        }
    )
    got, current = [], start
    while (current := cron.next_after(current, tz)) is not None and current <= end:
        got.append(current)
    assert got == expected
