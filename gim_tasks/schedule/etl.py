"""The ETL grid of SPEC S1: cycles start at ``etl-start-time``, then every ``etl-frequency``
minutes, the last one at ``etl-end-time``; the span may cross midnight. When the frequency does
not divide the span, the final cycle still begins at ``etl-end-time`` (GIM: "the time of day
that the final ETL cycle begins"): the gap before it is shorter (the configuration check warns).

Slots are wall times in the schedule's zone, resolved by S10. Each *ETL day* is anchored at
``etl-start-time`` on a calendar date; its slots may run past midnight into the next date.

[decision] ``etl-end-time`` equal to ``etl-start-time`` means round the clock: slots every
``etl-frequency`` minutes all day, the grid re-anchored at ``etl-start-time`` each day (the
final cycle of an ETL day is the last slot before the next day's first).
"""

from __future__ import annotations

import bisect
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
    def offsets(self) -> tuple[int, ...]:
        """Minutes after ``etl-start-time`` of each slot of an ETL day: every ``frequency``
        minutes, and the final one at ``etl-end-time`` (S1), whether or not it is on the grid."""
        return _offsets(self)

    @property
    def short_gap(self) -> int | None:
        """Minutes between the last two slots when the frequency does not divide the span."""
        if self.round_the_clock or self.span_minutes % self.frequency == 0:
            return None
        if self.span_minutes < self.frequency:
            return self.span_minutes
        return self.span_minutes % self.frequency

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
        text = f"every {self.frequency} min from {start} to {self.end.strftime('%H:%M')}"
        if self.short_gap is not None:
            text += f" (the final cycle {self.short_gap} min after the one before)"
        return text


@functools.lru_cache(maxsize=64)
def _offsets(grid: EtlGrid) -> tuple[int, ...]:
    if grid.round_the_clock:
        return tuple(range(0, DAY_MINUTES, grid.frequency))
    span = grid.span_minutes
    regular = tuple(range(0, span + 1, grid.frequency))
    return regular if regular[-1] == span else (*regular, span)


@functools.lru_cache(maxsize=4096)
def _next_slot(grid: EtlGrid, instant: datetime, tz: tzinfo) -> datetime:
    local = wall(instant, tz)
    if not offsets_stable(instant, tz):
        local -= timedelta(hours=3)  # see cron._next_after
    first_anchor = local.date() - timedelta(days=1)
    for offset in range(4):
        anchor = datetime.combine(first_anchor + timedelta(days=offset), grid.start)
        elapsed = (local - anchor) // timedelta(minutes=1)
        offsets = grid.offsets
        # Slots before the grid slot at or before ``elapsed`` cannot be after ``instant``.
        first = bisect.bisect_left(offsets, max(0, elapsed // grid.frequency * grid.frequency))
        for offset in offsets[first:]:
            fired = resolve(anchor + timedelta(minutes=offset), tz)
            if fired > instant:
                return fired
    raise AssertionError("an ETL grid always has a slot within four days")
