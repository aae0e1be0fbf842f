"""The Timeline (SPEC A7; issue 21): planned against actual for every job over a day or a week
in the schedule's zone, as data (``GET /api/timeline``) and as server-rendered SVG (the
Timeline tab; no script, no external asset).

One lane per job. Items:

- ``planned``: every firing of the pure plan (``schedule.plan``, as ``gim schedule plan``) in
  the period, with the ledger's verdict when it has one (O1); ledger firings the current
  options no longer plan are shown as well (the options changed since);
- ``window``: aggregation windows, from their opening to their close (S7);
- ``run``: every run that overlaps the period, from its start to its end (or now), with its
  state and R4 outcome.

The axis is elapsed time (computed on timestamps: two aware datetimes of the same zone
subtract as wall clocks in Python): a day is 24 hours wide, 23 on the spring-forward day and
25 on the fall-back day, where the repeated hour's labels appear twice (S10).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gim_tasks.db.tables import firing, job_run
from gim_tasks.lifecycle import RunState, outcome
from gim_tasks.monitor import notes
from gim_tasks.schedule import plan
from gim_tasks.schedule.jobs import AGGREGATE, JOB_NAMES
from gim_tasks.schedule.localtime import resolve, wall, zone
from gim_tasks.schedule.options import ScheduleOptions

MAX_DAYS = 7
#: Days the timeline draws (a schedule's plan beyond is arithmetic on the edge of datetime).
FIRST_YEAR, LAST_YEAR = 1970, 2999
#: Verdicts drawn as marks (the others are the plain planned tick).
MARKED = ("late", "missed", "blocked")


@dataclass(frozen=True)
class Item:
    kind: str  # planned | window | run | hold (P1, P3: a pause or a blackout window)
    start: datetime
    end: datetime | None = None
    state: str | None = None
    outcome: str | None = None
    run_id: int | None = None
    verdict: str | None = None
    reason: str | None = None
    firing_id: str | None = None
    notes: tuple[str, ...] = ()  # P7: "actor: text" of a run's or a firing's notes

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "start": self.start.isoformat(),
            "end": self.end.isoformat() if self.end is not None else None,
            "state": self.state,
            "outcome": self.outcome,
            "run_id": self.run_id,
            "verdict": self.verdict,
            "reason": self.reason,
            "firing_id": self.firing_id,
            "notes": list(self.notes),
        }


@dataclass
class Timeline:
    zone: str
    start: datetime  # aware, in the zone
    end: datetime
    now: datetime
    lanes: dict[str, list[Item]] = field(default_factory=dict)

    @property
    def hours(self) -> float:
        # Elapsed time: timestamps (aware datetimes of one zone subtract as wall clocks).
        return (self.end.timestamp() - self.start.timestamp()) / 3600

    def as_dict(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "hours": self.hours,
            "now": self.now.isoformat(),
            "lanes": [
                {"job": job, "items": [item.as_dict() for item in items]}
                for job, items in self.lanes.items()
            ],
        }


def period(options: ScheduleOptions, day: date, days: int) -> tuple[datetime, datetime]:
    """[local midnight of ``day``, local midnight ``days`` later) as aware instants."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be 1 to {MAX_DAYS}, not {days}")
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise ValueError(f"start must be a day from {FIRST_YEAR} to {LAST_YEAR}, not {day}")
    tz = zone(options.timezone)
    start = datetime.combine(day, datetime.min.time())
    return resolve(start, tz).astimezone(tz), resolve(start + timedelta(days=days), tz).astimezone(
        tz
    )


def planned_items(
    options: ScheduleOptions, start: datetime, end: datetime, verdicts: dict[str, Any]
) -> dict[str, list[Item]]:
    """The plan's firings and windows per job (pure). ``verdicts``: ledger rows by firing id;
    those the plan does not contain are added as planned firings of their job."""
    from gim_tasks.monitor.ledger import event_firing_id

    lanes: dict[str, list[Item]] = {job: [] for job in JOB_NAMES}
    events = plan.plan(options, start, end)
    seen: set[str] = set()
    opened: datetime | None = None
    for event in events:
        at = event.at
        if event.job == AGGREGATE:
            if event.event == "start":
                opened = at
            else:
                lanes[AGGREGATE].append(Item("window", opened or start, at))
                opened = None
        fid = event_firing_id(event)
        seen.add(fid)
        row = verdicts.get(fid)
        lanes[event.job].append(
            Item(
                "planned",
                at,
                verdict=row.verdict if row is not None else None,
                reason=row.reason if row is not None else None,
                run_id=row.run_id if row is not None else None,
                firing_id=fid,
            )
        )
    if opened is not None:
        lanes[AGGREGATE].append(Item("window", opened, end))
    elif options.run_aggregates and not any(e.job == AGGREGATE for e in events):
        # A window that spans the whole period (opened before, closes after).
        from gim_tasks.schedule.engine import open_window

        if open_window(options, start, zone(options.timezone)) is not None:
            lanes[AGGREGATE].append(Item("window", start, end))
    for fid, row in verdicts.items():
        if fid not in seen and row.job in lanes:
            lanes[row.job].append(
                Item(
                    "planned",
                    row.planned_at.astimezone(zone(options.timezone)),
                    verdict=row.verdict,
                    reason=row.reason,
                    run_id=row.run_id,
                    firing_id=fid,
                )
            )
    return lanes


def load(
    conn: Connection, options: ScheduleOptions, day: date, days: int, now: datetime
) -> Timeline:
    """The timeline of ``days`` local days from ``day``: the plan, the ledger, the runs."""
    start, end = period(options, day, days)
    tz = zone(options.timezone)
    rows = conn.execute(
        sa.select(firing).where(firing.c.planned_at >= start, firing.c.planned_at < end)
    ).all()
    lanes = planned_items(options, start, end, {row.firing_id: row for row in rows})
    runs = conn.execute(
        sa.select(
            job_run.c.id,
            job_run.c.job,
            job_run.c.state,
            job_run.c.stop_kind,
            job_run.c.skip,
            job_run.c.started_at,
            job_run.c.ended_at,
        )
        .where(
            job_run.c.started_at.is_not(None),
            job_run.c.started_at < end,
            sa.or_(job_run.c.ended_at.is_(None), job_run.c.ended_at >= start),
        )
        .order_by(job_run.c.started_at)
    ).all()
    for run in runs:
        if run.job not in lanes:
            continue
        finished = run.ended_at or (now if run.state == RunState.RUNNING else run.started_at)
        lanes[run.job].append(
            Item(
                "run",
                run.started_at.astimezone(tz),
                finished.astimezone(tz),
                state=run.state,
                outcome=outcome(run.state, run.stop_kind, run.skip)
                or ("running" if run.state == RunState.RUNNING else None),
                run_id=run.id,
            )
        )
    _holds(conn, lanes, start, end, now, tz)
    _notes(conn, lanes)
    for items in lanes.values():
        items.sort(key=lambda item: (item.start, item.kind))
    return Timeline(options.timezone, start, end, now.astimezone(tz), lanes)


def _notes(conn: Connection, lanes: dict[str, list[Item]]) -> None:
    """P7: each run's and each firing's notes, for the hover (two indexed queries)."""
    items = [item for lane in lanes.values() for item in lane]
    on_runs = notes.notes_of(
        conn,
        notes.NoteOn.RUN,
        [i.run_id for i in items if i.kind == "run" and i.run_id is not None],
    )
    on_firings = notes.notes_of(
        conn,
        notes.NoteOn.FIRING,
        [i.firing_id for i in items if i.kind == "planned" and i.firing_id],
    )
    for lane in lanes.values():
        for index, item in enumerate(lane):
            found = (
                on_runs.get(str(item.run_id))
                if item.kind == "run"
                else on_firings.get(str(item.firing_id))
                if item.kind == "planned"
                else None
            )
            if found:
                lane[index] = replace(
                    item, notes=tuple(f"{n['actor']}: {n['text']}" for n in found)
                )


def _holds(
    conn: Connection,
    lanes: dict[str, list[Item]],
    start: datetime,
    end: datetime,
    now: datetime,
    tz: Any,
) -> None:
    """P1, P3: shade each lane where a pause (from when it began to its until, or now) or a
    blackout window naming the job holds its firings; the reason on hover."""
    from gim_tasks.runtime import holds
    from gim_tasks.schedule.jobs import exclusivity_of

    held = holds.load(conn, now)
    for job, items in lanes.items():
        for key in (job, "*"):
            pause = held.pauses.get(key)
            if pause is not None and pause.paused_at is not None:
                begins, ends = max(pause.paused_at, start), min(pause.until or end, end)
                if begins < ends:
                    words = pause.words + (" (every job)" if key == "*" else "")
                    items.append(
                        Item("hold", begins.astimezone(tz), ends.astimezone(tz), reason=words)
                    )
        for window in held.blackouts:
            if window.names(job, exclusivity_of(job)):
                for begins, ends in window.intervals(start, end, tz):
                    items.append(
                        Item(
                            "hold", begins.astimezone(tz), ends.astimezone(tz), reason=window.words
                        )
                    )


# --- SVG ------------------------------------------------------------------------------------------

WIDTH = 1400
LABEL = 170
LANE = 38
TOP = 34


def _ticks(timeline: Timeline) -> list[tuple[datetime, str, bool]]:
    """Grid lines: every hour for a day (every 6 hours for longer), labelled with the local
    wall time; ``True`` for a local midnight."""
    tz = zone(timeline.zone)
    step = 1 if timeline.hours <= 25 else 6
    ticks = []
    at = timeline.start.astimezone(UTC)  # steps of elapsed hours (not of wall-clock hours)
    while at < timeline.end:
        local = wall(at, tz)
        if local.minute == 0 and local.hour % step == 0:
            midnight = local.hour == 0
            text = local.strftime("%a %d %H:%M" if midnight and step > 1 else "%H:%M")
            ticks.append((at, text, midnight))
        at += timedelta(hours=1)
    return ticks


def svg(timeline: Timeline, width: int = WIDTH, runs_clickable: bool = True) -> str:
    """The timeline as one SVG element (inline in the page; CSS classes from style.css)."""
    plot = width - LABEL - 20
    origin = timeline.start.timestamp()
    span = timeline.end.timestamp() - origin
    height = TOP + LANE * len(timeline.lanes) + 10

    def x(at: datetime) -> float:
        seconds = at.timestamp() - origin
        return round(LABEL + max(0.0, min(span, seconds)) / span * plot, 1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" '
        # role="group", not "img": an image's children are presentational, so the links of
        # its run bars would be focusable yet hidden from assistive technology (axe:
        # nested-interactive).
        f'height="{height}" viewBox="0 0 {width} {height}" role="group" '
        f'aria-label="Timeline {escape(timeline.zone)}">'
    ]
    for at, text, midnight in _ticks(timeline):
        cls = "grid midnight" if midnight else "grid"
        parts.append(
            f'<line class="{cls}" x1="{x(at)}" y1="{TOP - 6}" x2="{x(at)}" y2="{height - 6}"/>'
            f'<text class="hour" x="{x(at) + 2}" y="{TOP - 10}">{escape(text)}</text>'
        )
    for index, (job, items) in enumerate(timeline.lanes.items()):
        y = TOP + index * LANE
        parts.append(
            f'<g class="lane" data-job="{job}"><rect class="lane-bg" x="{LABEL}" y="{y}" '
            f'width="{plot}" height="{LANE - 4}"/><text class="job" x="4" y="{y + 22}">'
            f"{job}</text>"
        )
        bands = (
            ("hold", lambda i: f"{i.reason or 'held'}: {i.start:%Y-%m-%d %H:%M} to "
             f"{i.end:%Y-%m-%d %H:%M}"),
            ("window", lambda i: f"aggregation window {i.start:%H:%M} to {i.end:%H:%M}"),
        )  # fmt: skip
        for kind, words_of in bands:  # a pause or blackout (P1, P3), then aggregation windows
            for item in items:
                if item.kind == kind and item.end is not None:
                    parts.append(
                        f'<rect class="{kind}" x="{x(item.start)}" y="{y}" '
                        f'width="{max(1.0, x(item.end) - x(item.start))}" height="{LANE - 4}">'
                        f"<title>{escape(words_of(item))}</title></rect>"
                    )
        for item in items:
            if item.kind == "run" and item.end is not None:
                left, right = x(item.start), x(item.end)
                title = (
                    f"run {item.run_id}: {item.state}, {item.start:%Y-%m-%d %H:%M:%S} to "
                    f"{item.end:%H:%M:%S}"
                ) + "".join(f"\nnote {n}" for n in item.notes)
                bar = (
                    f'<rect class="run outcome-{item.outcome or "none"}" x="{left}" '
                    f'y="{y + 9}" width="{max(2.0, right - left)}" height="{LANE - 20}" '
                    f'data-run="{item.run_id}"><title>{escape(title)}</title></rect>'
                )
                if runs_clickable:
                    bar = f'<a href="/runs/{item.run_id}">{bar}</a>'
                parts.append(bar)
        for item in items:
            if item.kind != "planned":
                continue
            left = x(item.start)
            verdict = item.verdict or "pending"
            title = (
                f"planned {item.start:%Y-%m-%d %H:%M} ({verdict})"
                + (f": {item.reason}" if item.reason else "")
                + "".join(f"\nnote {n}" for n in item.notes)
            )
            if item.verdict in MARKED:
                parts.append(
                    f'<g class="mark verdict-{item.verdict}" '
                    f'data-firing="{escape(item.firing_id or "")}">'
                    f'<path d="M{left - 5},{y + 1} L{left + 5},{y + 1} L{left},{y + 10} Z"/>'
                    f"<title>{escape(title)}</title></g>"
                )
            else:
                parts.append(
                    f'<line class="planned verdict-{verdict}" x1="{left}" y1="{y + 2}" '
                    f'x2="{left}" y2="{y + LANE - 6}"><title>{escape(title)}</title></line>'
                )
        parts.append("</g>")
    if timeline.start <= timeline.now < timeline.end:
        parts.append(
            f'<line class="now" x1="{x(timeline.now)}" y1="{TOP - 6}" x2="{x(timeline.now)}" '
            f'y2="{height - 6}"><title>now {timeline.now:%H:%M:%S}</title></line>'
        )
    parts.append("</svg>")
    return "".join(parts)


def planned_timeline(options: ScheduleOptions, day: date, days: int, now: datetime) -> Timeline:
    """The plan alone (no runs, no verdicts): what a schedule change would do."""
    start, end = period(options, day, days)
    lanes = planned_items(options, start, end, {})
    tz = zone(options.timezone)
    return Timeline(options.timezone, start, end, now.astimezone(tz), lanes)


def preview(options: Any, values: dict[str, str]) -> tuple[Any, Any]:
    """``options`` with ``[schedule]`` ``values`` changed (each validated: an OptionError names
    the bad one and what is allowed) and the configuration check's report on them. Nothing is
    stored."""
    from gim_tasks.options.check import check_options

    changed = options
    for name, value in values.items():
        changed = changed.with_text("schedule", name, value)
    return changed, check_options(changed)


def today(options: ScheduleOptions, now: datetime) -> date:
    return wall(now, zone(options.timezone)).date()
