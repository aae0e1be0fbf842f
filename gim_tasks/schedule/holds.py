"""What operators hold back (SPEC P1-P3): paused jobs, skipped firings, blackout windows.

Pure: the values the exclusivity gate reads (``SchedulerState.holds``) and the rules of a
blackout window in the schedule's zone. ``gim_tasks.runtime.holds`` stores and loads them.

- A pause holds a job's scheduled firings (``*``: every job's; each job keeps its own pause
  and reason under a global one). Manual starts stay allowed (P1).
- A skip holds one future firing, by its firing id (P2).
- A blackout holds the firings of the jobs it names (none named: every job but maintenance)
  whose instant lies inside it, in the schedule's zone: ``once`` (local wall times, S10:
  a time inside a DST gap is the first instant after it), ``weekly`` (``Sat 00:00-Sun 06:00``,
  wall-clock minutes of the week, wrapping past Sunday) or ``month-end`` (the last N local days
  of every month) (P3).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from typing import Literal

from gim_tasks.schedule.localtime import resolve, wall

GLOBAL = "*"  # the job of a pause of every job
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WEEKLY_FORM = (
    "'DAY HH:MM-DAY HH:MM' with DAY one of Mon Tue Wed Thu Fri Sat Sun, e.g. 'Sat 00:00-Sun 06:00'"
)
LOCAL_FORM = "a local time YYYY-MM-DDTHH:MM in the schedule's zone"
_WEEKLY = re.compile(r"^(\w{3}) (\d{2}):(\d{2})-(\w{3}) (\d{2}):(\d{2})$")
BlackoutKind = Literal["once", "weekly", "month-end"]


@dataclass(frozen=True)
class Pause:
    job: str  # a job's name, or GLOBAL
    reason: str
    actor: str
    until: datetime | None = None
    source: str = "operator"  # or "failures" (P5)
    paused_at: datetime | None = None

    @property
    def words(self) -> str:
        return f"paused by {self.actor}: {self.reason}"

    def covers(self, instant: datetime | None) -> bool:
        """Does it hold a firing planned at ``instant`` (None: now)? Until its ``until``."""
        return self.until is None or instant is None or instant < self.until


@dataclass(frozen=True)
class OperatorSkip:
    firing_id: str
    reason: str
    actor: str


def week_minutes(text: str) -> tuple[int, int]:
    """``Sat 00:00-Sun 06:00`` as (start, end) minutes of the week from Monday 00:00; a
    ValueError naming the allowed form."""
    found = _WEEKLY.match(text.strip())
    if not found or found[1] not in DAYS or found[4] not in DAYS:
        raise ValueError(f"weekly window '{text}' is not {WEEKLY_FORM}")
    minutes = []
    for day, hour, minute in ((found[1], found[2], found[3]), (found[4], found[5], found[6])):
        if int(hour) > 23 or int(minute) > 59:
            raise ValueError(f"weekly window '{text}': {hour}:{minute} is not a time HH:MM")
        minutes.append(DAYS.index(day) * 1440 + int(hour) * 60 + int(minute))
    if minutes[0] == minutes[1]:
        raise ValueError(f"weekly window '{text}' is empty: it must end after it starts")
    return minutes[0], minutes[1]


def local_time(text: str) -> datetime:
    """``YYYY-MM-DDTHH:MM`` as a naive local wall time; a ValueError naming the form."""
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M")  # noqa: DTZ007 - wall time
    except ValueError:
        raise ValueError(f"'{text}' is not {LOCAL_FORM}") from None


@dataclass(frozen=True)
class Blackout:
    name: str
    kind: BlackoutKind
    reason: str
    jobs: tuple[str, ...] = ()  # empty: every job but maintenance
    starts: str | None = None  # once: local wall times
    ends: str | None = None
    weekly: str | None = None  # weekly: "Sat 00:00-Sun 06:00"
    days: int | None = None  # month-end: the last N days of a month

    def check(self) -> None:
        """A ValueError naming what is wrong and what is allowed."""
        if self.kind == "once":
            if not self.starts or not self.ends:
                raise ValueError(f"a one-off blackout needs --from and --to, each {LOCAL_FORM}")
            if local_time(self.ends) <= local_time(self.starts):
                raise ValueError(f"blackout '{self.name}' ends ({self.ends}) before it starts")
        elif self.kind == "weekly":
            week_minutes(self.weekly or "")
        elif self.kind == "month-end":
            if self.days is None or not 1 <= self.days <= 27:
                raise ValueError("--month-end takes the number of last days, 1 to 27")
        else:
            raise ValueError(f"blackout kind '{self.kind}'; allowed: once, weekly, month-end")

    def names(self, job: str, exclusivity: str | None) -> bool:
        """Does this window hold ``job`` (default: every job but maintenance)?"""
        return job in self.jobs if self.jobs else exclusivity != "maintenance"

    def covers(self, instant: datetime, tz: tzinfo) -> bool:
        """Is ``instant`` inside the window, in the zone ``tz``?"""
        if self.kind == "once" and self.starts and self.ends:
            return (
                resolve(local_time(self.starts), tz) <= instant < resolve(local_time(self.ends), tz)
            )
        local = wall(instant, tz)
        if self.kind == "weekly" and self.weekly:
            start, end = week_minutes(self.weekly)
            now = local.weekday() * 1440 + local.hour * 60 + local.minute
            return start <= now < end if start < end else now >= start or now < end
        if self.kind == "month-end" and self.days:
            length = calendar.monthrange(local.year, local.month)[1]
            return local.day > length - self.days
        return False

    @property
    def words(self) -> str:
        return f"blackout '{self.name}': {self.reason}"

    def intervals(
        self, start: datetime, end: datetime, tz: tzinfo
    ) -> list[tuple[datetime, datetime]]:
        """The window's periods overlapping [start, end), as instants (the Timeline shades
        them): a weekly window once a week, a month-end window once a month."""
        found: list[tuple[datetime, datetime]] = []
        if self.kind == "once" and self.starts and self.ends:
            found.append((resolve(local_time(self.starts), tz), resolve(local_time(self.ends), tz)))
        elif self.kind == "weekly" and self.weekly:
            first, last = week_minutes(self.weekly)
            length = (last - first) % (7 * 1440)
            day = wall(start, tz).date() - timedelta(days=7)
            while resolve(datetime.combine(day, time()), tz) < end:
                if day.weekday() == first // 1440:
                    opens = datetime.combine(day, time()) + timedelta(minutes=first % 1440)
                    found.append(
                        (resolve(opens, tz), resolve(opens + timedelta(minutes=length), tz))
                    )
                day += timedelta(days=1)
        elif self.kind == "month-end" and self.days:
            month = wall(start, tz).date().replace(day=1)
            while resolve(datetime.combine(month, time()), tz) < end:
                following = (month + timedelta(days=32)).replace(day=1)
                first_day = following - timedelta(days=self.days)
                found.append(
                    (
                        resolve(datetime.combine(first_day, time()), tz),
                        resolve(datetime.combine(following, time()), tz),
                    )
                )
                month = following
        return [(max(a, start), min(b, end)) for a, b in found if a < end and b > start]

    def describe(self) -> str:
        if self.kind == "once":
            return f"from {self.starts} to {self.ends}"
        if self.kind == "weekly":
            return f"weekly {self.weekly}"
        return f"the last {self.days} day{'s' if self.days != 1 else ''} of every month"


@dataclass(frozen=True)
class Holds:
    """Every operator hold in force, as the beat read it at this tick."""

    pauses: Mapping[str, Pause] = field(default_factory=dict)
    skips: Mapping[str, OperatorSkip] = field(default_factory=dict)
    blackouts: tuple[Blackout, ...] = ()

    def pause_of(self, job: str, instant: datetime | None = None) -> Pause | None:
        """The job's own pause, else a global one, holding a firing planned at ``instant``
        (a pause ended by its ``until`` still holds the firings planned before it)."""
        for key in (job, GLOBAL):
            pause = self.pauses.get(key)
            if pause is not None and pause.covers(instant):
                return pause
        return None

    def blackout_of(
        self, job: str, exclusivity: str | None, instant: datetime, tz: tzinfo
    ) -> Blackout | None:
        return next(
            (
                window
                for window in self.blackouts
                if window.names(job, exclusivity) and window.covers(instant, tz)
            ),
            None,
        )

    def __bool__(self) -> bool:
        return bool(self.pauses or self.skips or self.blackouts)
