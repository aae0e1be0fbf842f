"""Cron expressions of the GIM schedule options (SPEC §2).

Two fields, ``minute hour`` (``0/10 *``, ``30 2``, ``20 0,8,16``), or the standard five,
``minute hour day-of-month month day-of-week``. Each field accepts ``*``, a number, a range
``a-b``, a step ``*/n``, ``a/n`` (from a, every n: the GIM form of ``0/10``) or ``a-b/n``, and
comma-separated lists of these. Day-of-week is 0-7 (0 and 7 are Sunday). As in standard cron,
when both day-of-month and day-of-week are restricted a day matching either fires.

croniter parses and expands the fields and iterates the matching wall-clock times, on naive
local times: with aware datetimes croniter fires a daily 02:30 twice on a fall-back night. Each
wall time is then resolved to an instant by S10 (``localtime.resolve``), which is ours. What
stays ours besides (the smallest adapter, issue "Structure" item 3): a 2-field cron is the
5-field one with ``* * *``; a field may hold only digits and ``* , - /`` (croniter also takes
names, ``L``, ``W``, ``#``, ``?`` and a sixth seconds field, which GIM's options do not) and
no backwards range (croniter reads ``10-5`` as wrapping round); and an expression croniter
refuses is reported naming the field and the allowed form, instead of croniter's message for
the whole expression.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from croniter import CroniterBadDateError, CroniterError, croniter

from gim_tasks.schedule.localtime import offsets_stable, resolve, wall

FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)
SYNTAX = "'*', N, A-B, */S, N/S, A-B/S or comma-separated lists of these"
_TOKENS = re.compile(r"[0-9*,/-]+")
_RANGE = re.compile(r"(?<![0-9])(\d+)-(\d+)")


class CronError(ValueError):
    """A cron expression that cannot be parsed; the message says where and what is allowed."""


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression: ``five`` is its 5-field form (what croniter iterates), the
    sets are croniter's expansion. ``minutes_of_day`` is the sorted list of wall times (minutes
    after midnight) at which a matching day fires."""

    expression: str
    five: str
    # Compared and hashed by the expression only (the rest follows from it): the caches below
    # hash a Cron on every lookup, several times a tick.
    minutes: frozenset[int] = field(compare=False)
    hours: frozenset[int] = field(compare=False)
    days: frozenset[int] | None = field(compare=False)  # None: any day of month
    months: frozenset[int] | None = field(compare=False)
    weekdays: frozenset[int] | None = field(compare=False)  # 0 = Monday (Python), None: any
    minutes_of_day: tuple[int, ...] = field(compare=False)

    def _wall_times(self, start: datetime) -> Iterator[datetime]:
        """Matching wall times at or after the naive ``start``, ascending, by croniter on naive
        times (it looks a few years ahead; a cron that never fires ends the iteration)."""
        times = croniter(self.five, start - timedelta(seconds=1), day_or=True)
        while True:
            try:
                yield times.get_next(datetime)
            except CroniterBadDateError:
                return

    def next_after(self, instant: datetime, tz: tzinfo) -> datetime | None:
        """The first firing strictly after the aware ``instant`` (UTC), or None if never."""
        return _next_after(self, instant, tz)

    def latest_at_or_before(
        self, instant: datetime, tz: tzinfo, not_before: datetime
    ) -> datetime | None:
        """The last firing in ``(not_before, instant]``, or None. Used after downtime (S12):
        missed firings are collapsed into the latest one."""
        latest = None
        current = self.next_after(not_before, tz)
        # Jump close to the end first: firings are at most a day apart for 2-field crons.
        if current is not None and instant - current > timedelta(days=2):
            current = self.next_after(instant - timedelta(days=2), tz)
        while current is not None and current <= instant:
            latest = current
            current = self.next_after(current, tz)
        return latest

    def describe(self) -> str:
        """The schedule in words (SPEC A1), e.g. 'every 10 min', 'daily at 00:20, 08:20, 16:20'."""
        return describe(self)


@functools.lru_cache(maxsize=4096)
def _next_after(cron: Cron, instant: datetime, tz: tzinfo) -> datetime | None:
    # Near a DST change a later wall time can resolve to an instant before `instant`'s wall
    # time; start the scan early enough to see it. Elsewhere, start at the wall time itself.
    start = wall(instant, tz)
    if not offsets_stable(instant, tz):
        start -= timedelta(hours=3)
    start = start.replace(second=0, microsecond=0)
    for naive in _walls_from(cron, start):
        fired = resolve(naive, tz)
        if fired > instant:
            return fired
    return None


def _walls_from(cron: Cron, start: datetime) -> Iterator[datetime]:
    """Matching wall times at or after the naive ``start``, ascending, from croniter's
    wall times of each day (cached per day: the beat ticks every second, and building a
    croniter iterator costs more than a tick's decisions; bench schedule)."""
    day: date | None = start.date()
    while day is not None:
        walls, following = _day_walls(cron, day)
        yield from walls[bisect.bisect_left(walls, start) :]
        day = following.date() if following is not None else None


@functools.lru_cache(maxsize=1024)
def _day_walls(cron: Cron, day: date) -> tuple[tuple[datetime, ...], datetime | None]:
    """The matching wall times of the naive ``day`` and the first one after it (None: never)."""
    end = datetime.combine(day + timedelta(days=1), time())
    walls: list[datetime] = []
    for naive in cron._wall_times(datetime.combine(day, time())):
        if naive >= end:
            return tuple(walls), naive
        walls.append(naive)
    return tuple(walls), None


def _problem(expression: str, index: int, text: str) -> CronError:
    name, low, high = FIELDS[index]
    return CronError(
        f"cron '{expression}': {name} field '{text}' is not valid; allowed: {SYNTAX}, "
        f"with values {low}-{high}"
    )


def _check_field(expression: str, index: int, text: str) -> None:
    """What croniter would take but GIM's options do not: other characters, backwards ranges."""
    if not _TOKENS.fullmatch(text):
        raise _problem(expression, index, text)
    for first, last in _RANGE.findall(text):
        if int(last) < int(first):
            raise CronError(
                f"cron '{expression}': {FIELDS[index][0]} range {first}-{last} runs backwards"
            )


def _expanded(values: Sequence[int | str], low: int, high: int) -> frozenset[int] | None:
    """croniter's expansion of one field; None for '*' (any)."""
    if values == ["*"]:
        return None
    return frozenset(int(value) for value in values if low <= int(value) <= high)


@functools.lru_cache(maxsize=256)
def parse_cron(expression: str) -> Cron:
    """Parse a 2- or 5-field cron expression; raise :class:`CronError` naming the problem."""
    fields = expression.split()
    if len(fields) not in (2, 5):
        raise CronError(
            f"cron '{expression}' has {len(fields)} field(s); expected 2 (minute hour, e.g. "
            "'0/10 *' or '30 2') or 5 (minute hour day-of-month month day-of-week)"
        )
    for index, text in enumerate(fields):
        _check_field(expression, index, text)
    five = " ".join([*fields, "*", "*", "*"][:5])
    try:
        expanded = croniter(five, day_or=True).expanded
    except CroniterError:
        # Name the field: the first one croniter refuses on its own.
        for index, text in enumerate(fields):
            alone = ["*"] * 5
            alone[index] = text
            try:
                croniter(" ".join(alone))
            except CroniterError:
                raise _problem(expression, index, text) from None
        raise CronError(f"cron '{expression}' is not valid; allowed per field: {SYNTAX}") from None
    minutes = _expanded(expanded[0], 0, 59) or frozenset(range(60))
    hours = _expanded(expanded[1], 0, 23) or frozenset(range(24))
    days = _expanded(expanded[2], 1, 31)
    months = _expanded(expanded[3], 1, 12)
    sundays_first = _expanded(expanded[4], 0, 7)
    # croniter: 0 is Sunday (7 is read as 0); Python: Monday is 0, Sunday is 6.
    weekdays = (
        None if sundays_first is None else frozenset((value - 1) % 7 for value in sundays_first)
    )
    minutes_of_day = tuple(sorted(h * 60 + m for h in hours for m in minutes))
    return Cron(expression, five, minutes, hours, days, months, weekdays, minutes_of_day)


def _clock(minute_of_day: int) -> str:
    return f"{minute_of_day // 60:02d}:{minute_of_day % 60:02d}"


def _step_of(values: frozenset[int], low: int, high: int) -> int | None:
    ordered = sorted(values)
    if len(ordered) < 2 or ordered[0] != low:
        return None
    step = ordered[1] - ordered[0]
    expected = list(range(low, high + 1, step))
    return step if ordered == expected else None


def describe(cron: Cron) -> str:
    """Human wording of a cron for the Scheduled view (A1)."""
    restricted_days = cron.days is not None or cron.months is not None or cron.weekdays is not None
    suffix = f" (days: {' '.join(cron.expression.split()[2:])})" if restricted_days else ""
    if len(cron.hours) == 24:
        if len(cron.minutes) == 60:
            return "every minute" + suffix
        step = _step_of(cron.minutes, 0, 59)
        if step is not None and 60 % step == 0:
            return f"every {step} min" + suffix
        if len(cron.minutes) == 1:
            return f"hourly at :{min(cron.minutes):02d}" + suffix
    times = cron.minutes_of_day
    if len(times) <= 4:
        return "daily at " + ", ".join(_clock(t) for t in times) + suffix
    step_hours = _step_of(cron.hours, 0, 23)
    if (
        len(cron.minutes) == 1
        and step_hours is not None
        and step_hours > 1
        and 24 % step_hours == 0
    ):
        return f"every {step_hours} h at :{min(cron.minutes):02d}" + suffix
    return f"{len(times)} times a day, {_clock(times[0])} to {_clock(times[-1])}" + suffix
