"""The ETL grid of SPEC S1: cycles start at ``etl-start-time``, then every ``etl-frequency``
minutes, the last one at ``etl-end-time``; the span may cross midnight.

Slots are wall times in the schedule's zone, resolved by S10. Each *ETL day* is anchored at
``etl-start-time`` on a calendar date; its slots may run past midnight into the next date.

[decision] ``etl-end-time`` equal to ``etl-start-time`` means round the clock: slots every
``etl-frequency`` minutes all day, the grid re-anchored at ``etl-start-time`` each day (the
final cycle of an ETL day is the last slot before the next day's first).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo

from gim_tasks.schedule.localtime import offsets_stable, resolve, wall

DAY_MINUTES = 24 * 60


def minute_of_day(value: time) -> int:
    return value.hour * 60 + value.minute


@dataclass(frozen=True)
class EtlGrid:
    start: time
    end: time
    frequency: int  # minutes, >= 1

    @property
    def span_minutes(self) -> int:
        """Minutes from the first to the final slot's wall time; 0 means round the clock."""
        return (minute_of_day(self.end) - minute_of_day(self.start)) % DAY_MINUTES

    @property
    def round_the_clock(self) -> bool:
        return self.span_minutes == 0

    @property
    def last_index(self) -> int:
        """Index k of the final slot of an ETL day (slot k starts at start + k*frequency)."""
        if self.round_the_clock:
            return (DAY_MINUTES - 1) // self.frequency
        return self.span_minutes // self.frequency

    def covers(self, local: time) -> bool:
        """Is the wall time inside the span [start, end] (both ends included)?"""
        if self.round_the_clock:
            return True
        offset = (minute_of_day(local) - minute_of_day(self.start)) % DAY_MINUTES
        return offset <= self.span_minutes

    def next_after(self, instant: datetime, tz: tzinfo) -> datetime:
        """The first slot strictly after the aware ``instant``."""
        return _next_slot(self, instant, tz)

    def latest_at_or_before(
        self, instant: datetime, tz: tzinfo, not_before: datetime
    ) -> datetime | None:
        """The last slot in ``(not_before, instant]``, or None (S12 collapses missed slots)."""
        latest = None
        current = self.next_after(max(not_before, instant - timedelta(days=2)), tz)
        if current <= not_before:  # pragma: no cover - next_after is strictly after
            return None
        while current <= instant:
            latest = current
            current = self.next_after(current, tz)
        return latest

    def describe(self) -> str:
        start = self.start.strftime("%H:%M")
        if self.round_the_clock:
            return f"every {self.frequency} min round the clock (grid from {start})"
        return f"every {self.frequency} min from {start} to {self.end.strftime('%H:%M')}"


@functools.lru_cache(maxsize=4096)
def _next_slot(grid: EtlGrid, instant: datetime, tz: tzinfo) -> datetime:
    local = wall(instant, tz)
    if not offsets_stable(instant, tz):
        local -= timedelta(hours=3)  # see cron._next_after
    first_anchor = local.date() - timedelta(days=1)
    for offset in range(4):
        anchor = datetime.combine(first_anchor + timedelta(days=offset), grid.start)
        elapsed = (local - anchor) // timedelta(minutes=1)
        first = max(0, elapsed // grid.frequency)
        for index in range(first, grid.last_index + 1):
            fired = resolve(anchor + timedelta(minutes=index * grid.frequency), tz)
            if fired > instant:
                return fired
    raise AssertionError("an ETL grid always has a slot within four days")
