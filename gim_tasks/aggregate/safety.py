"""D5: re-aggregation never destroys what it cannot rebuild. Pure: a request, what the mart
still holds and the local "today" -> None, or the refusal the operator reads.

A re-aggregation deletes the aggregate rows of its range and recomputes them from the level
below (SUBHOUR from the facts). Where that source is gone, the rows would come back empty and
nothing could restore them, so such a request is refused whole (never half-done):

- SUBHOUR is rebuilt from the facts, held from ``[gim-etl] days-to-keep-facts`` days ago (whole
  UTC day partitions, D2) or from what maintenance actually purged, if that is later;
- HOUR and DAY are rebuilt from SUBHOUR and HOUR, held ``days-to-keep-aggregates`` days;
- MONTH, QUARTER and YEAR are rebuilt from DAY, which is never purged;
- every day must lie in DATE_TIME (the intervals are its keys): a range outside it would
  "succeed" having rebuilt nothing.

The same decision runs at admission (every manual path, through
:func:`gim_tasks.schedule.admission.admit`, before ``--force`` is considered: it does not
override D5) and again when the aggregation job takes the request from the queue, since
maintenance may purge while a request waits for its window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from gim_tasks.schedule.jobs import MAINTAIN

if TYPE_CHECKING:
    from gim_tasks.aggregate.params import Reaggregation

#: The level each level is rebuilt from, and the option that keeps that source.
SOURCE = {
    "SUBHOUR": ("facts", "days-to-keep-facts"),
    "HOUR": ("SUBHOUR aggregates", "days-to-keep-aggregates"),
    "DAY": ("HOUR aggregates", "days-to-keep-aggregates"),
}


@dataclass(frozen=True)
class Holdings:
    """What the mart holds, read by :func:`gim_tasks.aggregate.retention.load_holdings`."""

    facts_from: datetime  # facts are held from this instant on
    aggregates_from: datetime  # SUBHOUR and HOUR rows are held from this instant on
    calendar: tuple[date, date] | None  # first and last local day of DATE_TIME (None: empty)
    keep: dict[str, int]  # retention option name -> days


def first_whole_day(instant: datetime, tz: ZoneInfo) -> date:
    """The first local day that begins at or after ``instant`` (its every hour is held)."""
    local = instant.astimezone(tz)
    day = local.date()
    return day if local.replace(tzinfo=None).time() == time(0) else day + timedelta(days=1)


def effective_range(request: Reaggregation, today: date) -> tuple[date, date]:
    """The days a request rebuilds: ``.Online`` only up to and including today, ``.Offline``
    only before today (see :mod:`gim_tasks.aggregate.params`); start > end: nothing."""
    start, end = request.start, request.end
    if request.flavor == "Online":
        start = max(start, today)
    elif request.flavor == "Offline":
        end = min(end, today - timedelta(days=1))
    return start, end


def refusal(
    request: Reaggregation,
    holdings: Holdings,
    tz: ZoneInfo,
    today: date,
    asked: str | None = None,
    loss: str | None = None,
) -> str | None:
    """Why ``request`` may not run (D5), naming the range (``asked``: how the operator asked
    for it), what is held and the option; None when every day of its range can be rebuilt.
    ``loss``: what running it anyway would destroy, in the asker's words (default: the
    levels a re-aggregation empties)."""
    start, end = effective_range(request, today)
    if start > end:
        return None  # the flavor leaves no day: nothing is deleted
    asked = asked or f"-insertPendingAgg range {request.start}:{request.end}"
    if holdings.calendar is None:
        return (
            f"{asked} lies outside DATE_TIME, which is empty; run {MAINTAIN} to fill it; "
            "nothing was changed (D5)"
        )
    first, last = holdings.calendar
    if start < first or end > last:
        where = "lies outside" if end < first or start > last else "reaches outside"
        return (
            f"{asked} {where} DATE_TIME, which holds {first} to {last} ([gim-etl] "
            "date-time-max-days-ahead fills it ahead); nothing was changed (D5)"
        )
    if request.level not in SOURCE:
        return None  # MONTH and above are rebuilt from DAY, which is kept forever
    source, option = SOURCE[request.level]
    held_from = holdings.facts_from if request.level == "SUBHOUR" else holdings.aggregates_from
    oldest = first_whole_day(held_from, tz)
    if start >= oldest:
        return None
    last_lost = min(end, oldest - timedelta(days=1))
    lost = f"{start}" if last_lost == start else f"{start} to {last_lost}"
    loss = loss or f"rebuilding would empty {request.level} and the levels above"
    return (
        f"{asked} needs the {source} of {lost}, which were purged: the oldest day still held "
        f"is {oldest} ([gim-etl] {option}={holdings.keep[option]}); {loss} for good; "
        "nothing was changed (D5)"
    )
