"""D5 boundaries: which local day is the first whole day held, in zones east and west of UTC
and across a DST change."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from gim_tasks.aggregate.safety import first_whole_day
from gim_tasks.schedule.localtime import zone


@pytest.mark.parametrize(
    ("instant", "tz", "day"),
    [
        (datetime(2026, 1, 1, tzinfo=UTC), "UTC", date(2026, 1, 1)),  # exactly midnight
        (datetime(2026, 1, 1, 0, 15, tzinfo=UTC), "UTC", date(2026, 1, 2)),
        (datetime(2026, 1, 1, tzinfo=UTC), "Europe/Berlin", date(2026, 1, 2)),  # 01:00 local
        (datetime(2025, 12, 31, 23, tzinfo=UTC), "Europe/Berlin", date(2026, 1, 1)),  # 00:00
        (datetime(2026, 1, 1, tzinfo=UTC), "America/New_York", date(2026, 1, 1)),  # 19:00 eve
        # 2026-03-29: Berlin's 23-hour day begins at 23:00 UTC on the 28th.
        (datetime(2026, 3, 28, 23, tzinfo=UTC), "Europe/Berlin", date(2026, 3, 29)),
        (datetime(2026, 3, 28, 23, 1, tzinfo=UTC), "Europe/Berlin", date(2026, 3, 30)),
    ],
)
def test_d5_first_whole_day(instant: datetime, tz: str, day: date) -> None:
    assert first_whole_day(instant, zone(tz)) == day
