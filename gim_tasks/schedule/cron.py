"""Cron expressions of the GIM schedule options (SPEC §2).

Two fields, ``minute hour`` (``0/10 *``, ``30 2``, ``20 0,8,16``), or the standard five,
``minute hour day-of-month month day-of-week``. Each field accepts ``*``, a number, a range
``a-b``, a step ``*/n``, ``a/n`` (from a, every n: the GIM form of ``0/10``) or ``a-b/n``, and
comma-separated lists of these. Day-of-week is 0-7 (0 and 7 are Sunday). As in standard cron,
when both day-of-month and day-of-week are restricted a day matching either fires.

Parsing is ours so that every error names the field and the allowed form; the arithmetic is
done in wall-clock time and resolved by S10 (``localtime.resolve``), which croniter does not
do (it fires a daily 02:30 twice on a fall-back night).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from gim_tasks.schedule.localtime import offsets_stable, resolve, wall

FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)
SYNTAX = "'*', N, A-B, */S, N/S, A-B/S or comma-separated lists of these"
#: How far ahead a search for the next firing looks before giving up (a 5-field cron such as
#: "0 0 31 2 *" never fires; Feb 29 on a Monday recurs within 28 years).
SEARCH_DAYS = 366 * 29


class CronError(ValueError):
    """A cron expression that cannot be parsed; the message says where and what is allowed."""


def _parse_number(text: str, name: str, low: int, high: int, expression: str) -> int:
    if not text.isdigit():
        raise CronError(
            f"cron '{expression}': {name} field has '{text}', expected a number {low}-{high}"
        )
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"cron '{expression}': {name} value {value} is out of range {low}-{high}")
    return value


def _parse_field(text: str, name: str, low: int, high: int, expression: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"cron '{expression}': empty list item in {name} field '{text}'")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            step = _parse_number(step_text, name + " step", 1, high - low + 1, expression)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _parse_number(first, name, low, high, expression)
            end = _parse_number(last, name, low, high, expression)
            if end < start:
                raise CronError(f"cron '{expression}': {name} range {base} runs backwards")
        else:
            start = _parse_number(base, name, low, high, expression)
            end = high if step_text else start  # "0/10": from 0 every 10 (GIM form)
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression. ``minutes_of_day`` is the sorted list of wall times (minutes
    after midnight) at which a matching day fires."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int] | None  # None: any day of month
    months: frozenset[int] | None
    weekdays: frozenset[int] | None  # 0 = Monday (Python), None: any
    minutes_of_day: tuple[int, ...]

    def matches_day(self, day: date) -> bool:
        if self.months is not None and day.month not in self.months:
            return False
        if self.days is None and self.weekdays is None:
            return True
        if self.days is not None and self.weekdays is not None:
            return day.day in self.days or day.weekday() in self.weekdays
        if self.days is not None:
            return day.day in self.days
        assert self.weekdays is not None
        return day.weekday() in self.weekdays

    def _wall_times(self, start: datetime) -> Iterator[datetime]:
        """Matching wall times at or after the naive ``start``, ascending."""
        day = start.date()
        first = start.hour * 60 + start.minute + (1 if start.second or start.microsecond else 0)
        for offset in range(SEARCH_DAYS):
            current = day + timedelta(days=offset)
            if not self.matches_day(current):
                continue
            index = bisect.bisect_left(self.minutes_of_day, first) if offset == 0 else 0
            midnight = datetime.combine(current, time())
            for minute in self.minutes_of_day[index:]:
                yield midnight + timedelta(minutes=minute)

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
    for naive in cron._wall_times(start.replace(second=0, microsecond=0)):
        fired = resolve(naive, tz)
        if fired > instant:
            return fired
    return None


@functools.lru_cache(maxsize=256)
def parse_cron(expression: str) -> Cron:
    """Parse a 2- or 5-field cron expression; raise :class:`CronError` naming the problem."""
    fields = expression.split()
    if len(fields) not in (2, 5):
        raise CronError(
            f"cron '{expression}' has {len(fields)} field(s); expected 2 (minute hour, e.g. "
            "'0/10 *' or '30 2') or 5 (minute hour day-of-month month day-of-week)"
        )
    parsed = [
        _parse_field(text, name, low, high, expression)
        for text, (name, low, high) in zip(fields, FIELDS, strict=False)
    ]
    minutes, hours = parsed[0], parsed[1]
    days = months = weekdays = None
    if len(fields) == 5:
        days = None if fields[2] == "*" else parsed[2]
        months = None if fields[3] == "*" else parsed[3]
        if fields[4] != "*":
            # cron: 0 and 7 are Sunday; Python: Monday is 0, Sunday is 6.
            weekdays = frozenset((value - 1) % 7 for value in parsed[4])
    minutes_of_day = tuple(sorted(h * 60 + m for h in hours for m in minutes))
    return Cron(expression, minutes, hours, days, months, weekdays, minutes_of_day)


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
