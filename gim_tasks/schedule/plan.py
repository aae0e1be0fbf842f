"""The ideal timeline of a period (``gim schedule plan``) and the Scheduled view's words
(``gim schedule next``, SPEC A1).

The timeline assumes runs take no time, so no exclusivity rule ever holds a job back: it shows
the firings the options produce. An ETL cycle appears as the start of Job_ExtractICON;
aggregation windows as a start and a stop of Job_AggregateGIM (windows that overlap or touch
merge into one; a window ends at its opening wall time plus aggregate-duration). Events are
those whose instant lies in [start, end).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from gim_tasks.schedule.engine import next_runs, streams, window_end
from gim_tasks.schedule.firings import firing_id
from gim_tasks.schedule.gate import held
from gim_tasks.schedule.holds import Holds
from gim_tasks.schedule.jobs import AGGREGATE, BY_NAME, JOB_NAMES, JOBS
from gim_tasks.schedule.localtime import resolve, zone
from gim_tasks.schedule.options import ScheduleOptions

ORDER = {name: index for index, name in enumerate(JOB_NAMES)}


@dataclass(frozen=True)
class Event:
    job: str
    event: Literal["start", "stop"]
    at: datetime  # aware, in the schedule's zone

    def as_dict(self) -> dict[str, str]:
        return {"job": self.job, "event": self.event, "at": self.at.isoformat()}


def period(options: ScheduleOptions, start: datetime, days: int) -> tuple[datetime, datetime]:
    """[start, end) for ``days`` local calendar days from the naive local ``start``."""
    tz = zone(options.timezone)
    return resolve(start, tz), resolve(start + timedelta(days=days), tz)


def plan(options: ScheduleOptions, start: datetime, end: datetime) -> list[Event]:
    """Every firing in [start, end), sorted by time (then by job order, stops first)."""
    if not options.run_scheduler:
        return []
    tz = zone(options.timezone)
    events: list[Event] = []
    just_before = start - timedelta(microseconds=1)
    for job, stream in streams(options).items():
        current = stream.next_after(just_before, tz)
        while current is not None and current < end:
            events.append(Event(job, "start", current.astimezone(tz)))
            current = stream.next_after(current, tz)
    if options.run_aggregates:
        events += _windows(options, start, end)
    events.sort(key=lambda e: (e.at, e.event != "stop", ORDER[e.job]))
    return events


def _windows(options: ScheduleOptions, start: datetime, end: datetime) -> list[Event]:
    tz, duration, cron = (
        zone(options.timezone),
        options.aggregate_duration,
        options.aggregate_schedule,
    )
    # Begin early enough to see a window that opened before `start` and is still open.
    current = cron.next_after(start - duration - timedelta(days=1), tz)
    merged: list[tuple[datetime, datetime]] = []
    while current is not None and current < end:
        closes = window_end(current, options, tz)
        if merged and current <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], closes))
        else:
            merged.append((current, closes))
        current = cron.next_after(current, tz)
    events = []
    for opens, closes in merged:
        if start <= opens < end:
            events.append(Event(AGGREGATE, "start", opens.astimezone(tz)))
        if start <= closes < end:
            events.append(Event(AGGREGATE, "stop", closes.astimezone(tz)))
    return events


@dataclass(frozen=True)
class NextRun:
    job: str
    active: bool
    schedule: str  # in words, with the time zone (A1)
    next_run: datetime | None  # in the schedule's zone

    def as_dict(self) -> dict[str, object]:
        return {
            "job": self.job,
            "active": self.active,
            "schedule": self.schedule,
            "next_run": self.next_run.isoformat() if self.next_run else None,
        }


def describe_schedules(options: ScheduleOptions) -> dict[str, tuple[bool, str]]:
    """Per job: whether the scheduler launches it, and its schedule in words (the catalogue's
    ``JobSpec.active`` and ``JobSpec.words``)."""
    return {spec.name: (spec.active(options), spec.words(options)) for spec in JOBS}


def next_unheld(options: ScheduleOptions, now: datetime, holds: Holds, job: str) -> datetime | None:
    """P1-P3: the job's next firing that an operator's hold does not skip (Next Run on the
    Scheduled list); None when none within 500 firings (a pause without an end)."""
    spec = BY_NAME[job]
    if not spec.active(options) or spec.fires in ("after-extract", "backfill"):
        return None
    tz = zone(options.timezone)
    stream = options.aggregate_schedule if spec.fires == "window" else spec.stream(options)
    at = now
    for _ in range(500):
        found = stream.next_after(at, tz)
        if found is None:
            return None
        at = found
        if held(job, holds, (firing_id(job, at), at), tz) is None:
            return at
    return None


def next_run_table(
    options: ScheduleOptions, now: datetime, holds: Holds | None = None
) -> list[NextRun]:
    """Each job's Next Run (A1): with ``holds``, the next firing that will really run."""
    tz = zone(options.timezone)
    upcoming = next_runs(options, now)
    if holds:
        upcoming = {job: next_unheld(options, now, holds, job) if at else at
                    for job, at in upcoming.items()}  # fmt: skip
    rows = []
    for job, (active, words) in describe_schedules(options).items():
        at = upcoming.get(job)
        rows.append(NextRun(job, active, words, at.astimezone(tz) if at and active else None))
    return rows


def parse_start(text: str) -> datetime:
    """``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM`` as a naive local datetime."""
    try:
        if "T" in text:
            return datetime.strptime(text, "%Y-%m-%dT%H:%M")  # noqa: DTZ007 - local wall time
        return datetime.combine(date.fromisoformat(text), datetime.min.time())
    except ValueError:
        raise ValueError(f"--start '{text}' is not YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
