"""Wall-clock times in the schedule's time zone, resolved to instants by SPEC S10.

- A wall time that does not exist (DST gap) fires at the first instant after the gap, i.e. the
  transition instant itself.
- A wall time that occurs twice (fall-back) fires once, at its first occurrence (``fold=0``).

Resolution is monotone: later wall times never resolve to earlier instants, so firings
generated in wall-time order come out sorted (equal instants are merged by the callers).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo


@functools.lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (``GMT`` and ``UTC`` included); raises ``ZoneInfoNotFoundError``."""
    return ZoneInfo(name)


def wall(instant: datetime, tz: tzinfo) -> datetime:
    """The naive wall-clock time of an aware ``instant`` in ``tz``."""
    return instant.astimezone(tz).replace(tzinfo=None)


def is_gap(naive: datetime, tz: tzinfo) -> bool:
    aware = naive.replace(tzinfo=tz)
    return wall(aware.astimezone(UTC), tz) != naive


def resolve(naive: datetime, tz: tzinfo) -> datetime:
    """The UTC instant at which the wall time ``naive`` fires in ``tz`` (S10)."""
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if wall(first, tz) == naive:
        return first  # exists; fold=0 is the first occurrence when it exists twice
    # In a gap: fold=1 resolves with the offset after the transition (an instant before it),
    # fold=0 with the offset before (an instant after it). The transition lies between; find
    # the first instant whose wall time is past the gap, to the second.
    low = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = first
    if low > high:
        low, high = high, low
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if wall(middle, tz) > naive:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0) if high.microsecond else high


def offsets_stable(instant: datetime, tz: tzinfo, around: timedelta = timedelta(days=1)) -> bool:
    """True when ``tz`` has the same UTC offset from ``instant - around`` to
    ``instant + around`` (no DST change nearby), so wall-time arithmetic is plain."""
    before = (instant - around).astimezone(tz).utcoffset()
    after = (instant + around).astimezone(tz).utcoffset()
    return before == after
