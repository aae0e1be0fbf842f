"""Is yesterday complete? Data days judged from the mart's own marks (SPEC Q1, Q2; issue 37,
first part).

A local data day D (the schedule's zone: 23 or 25 hours on DST days) is judged per stage:

- each fact table fed by a live source (its freshness SLO is not 0, as O4 judges it): complete
  when its newest fact starts at or after D's end (extraction and Transform load in source
  order, so data past the end means D's data is in), else pending; ``purged`` before the facts'
  purge mark; ``n/a`` for a table without live source or without any row;
- aggregation (every level at once: the aggregation job rebuilds all levels of an interval in
  one transaction, so they cannot differ): complete when D's facts are complete and no
  15-minute interval of D waits in ``agg_pending`` (facts changed since aggregation saw them: a
  late Transform, a re-extracted day, a queued re-aggregation), else pending;
- export (when ``run-export`` is on): complete when the export mark is at or past D's end.

Q1: ``[monitor] ready-by`` (07:00) is D's deadline on the next local morning. The watchdog
opens one ``deadline`` incident per day not complete by then, and ``deadline-at-risk`` earlier
when now + the remaining work (the wait for the next slot of each stage's job plus its p95,
from run history) passes it; both resolve when the day is complete. A day not complete behind
a newer complete day (a hole) opens ``incomplete-day``. Days before the scheduler's first tick
are never judged (a fresh install raises nothing), nor is any day with no judged table yet.
It reads marks, not runs: it fires when no run exists at all.

Q2's ``missing``: a day the marks call aggregated whose hierarchy has facts that day but a level
table without a row in it (rows deleted, a rebuild lost) is ``missing`` in its drill-down and in
its aggregation cell: not complete, so behind a newer complete day it is a hole
(``gim_day_coverage`` probes each table per day; the watchdog probes its 7 days).

The export stage is ``missing`` when the export mark is past the day but its intervals are not
all in chunk folders on disk (a chunk lost or deleted by hand), when this process can read the
export folder (a web replica on another host judges the mark only).

A day whose newest re-aggregation request was refused (D5) shows ``refused`` with the reason;
its aggregates are as they were, so it still counts as complete.

Q3: a day with an export chunk held by a failing quality check (``export_hold``, see
``monitor/checks.py``) shows ``held`` in its export cell, with the reason: not complete until
the chunk is published. The watchdog opens one ``check-failed`` incident per day with a failing
``error`` check no admin overrode, and resolves it when none is left.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gim_tasks.db.mart_tables import exported_through
from gim_tasks.db.tables import scheduler_epoch
from gim_tasks.lifecycle import Condition
from gim_tasks.options.types import ReadyByValue
from gim_tasks.schedule.jobs import EXPORT, EXTRACT, TRANSFORM
from gim_tasks.schedule.localtime import resolve, wall, zone

COMPLETE, PENDING, PURGED, NOT_JUDGED = "complete", "pending", "purged", "n/a"
MISSING = "missing"  # the marks say done, the data disagrees: a level with no row for the day
REFUSED = "refused"  # the newest re-aggregation asked of the day was refused (D5): as it was
HELD = "held"  # an export chunk of the day is held by a failing quality check (Q3)
AGGREGATION, EXPORT_STAGE = "aggregation", "export"
#: Days the watchdog looks back for deadlines and holes.
LOOK_BACK_DAYS = 7


@dataclass(frozen=True)
class Marks:
    """What the mart says, read at once (``load``)."""

    #: fact table -> the newest fact's start (None: no row); only the live-fed tables.
    facts: Mapping[str, datetime | None]
    #: 15-minute interval starts waiting for aggregation, as UTC instants, sorted.
    pending: tuple[datetime, ...]
    export_on: bool
    exported_through: datetime | None
    purged_facts: datetime | None = None
    purged_aggregates: datetime | None = None
    #: The scheduler's first tick: no day before it is judged.
    epoch: datetime | None = None
    #: Per local day (ISO), per fact and aggregate table present: has it a row that day?
    #: (``gim_day_coverage``); a day without an entry is judged from the marks only.
    coverage: Mapping[str, Mapping[str, bool]] = field(default_factory=dict)
    #: (hierarchy, its fact table, its level tables in LEVELS order).
    hierarchies: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    #: The export chunks on disk, (start, end) sorted; None: the folder is not readable here.
    chunks: tuple[tuple[datetime, datetime], ...] | None = None
    #: Chunks ending before this were removed by the output files' retention.
    chunks_kept_from: datetime | None = None
    #: Re-aggregation requests done, oldest first: (first day, last day, D5 refusal or None).
    requests: tuple[tuple[date, date, str | None], ...] = ()
    #: Export chunks held by a failing quality check (Q3): (start, end, reason), sorted.
    holds: tuple[tuple[datetime, datetime, str], ...] = ()


@dataclass(frozen=True)
class Day:
    day: date
    start: datetime  # aware UTC
    end: datetime
    cells: dict[str, str] = field(default_factory=dict)
    #: The aggregation's drill-down: hierarchy -> level -> cell (when the data was probed).
    levels: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Why a cell is what it is, where there is more to say (a refusal's D5 reason).
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def judged(self) -> bool:
        return any(value != NOT_JUDGED for value in self.cells.values())

    @property
    def complete(self) -> bool:
        judged = [v for v in self.cells.values() if v != NOT_JUDGED]
        return bool(judged) and all(v in (COMPLETE, PURGED, REFUSED) for v in judged)

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "hours": round((self.end - self.start).total_seconds() / 3600, 2),
            "complete": self.complete,
            "cells": dict(self.cells),
            "levels": {name: dict(cells) for name, cells in self.levels.items()},
            "reasons": dict(self.reasons),
        }


def bounds(day: date, tz_name: str) -> tuple[datetime, datetime]:
    """[local midnight of ``day``, next local midnight) as UTC instants (S10)."""
    tz = zone(tz_name)
    start = resolve(datetime.combine(day, time()), tz)
    end = resolve(datetime.combine(day + timedelta(days=1), time()), tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def judge_day(day: date, marks: Marks, tz_name: str) -> Day:
    """The stages of one local day (pure)."""
    start, end = bounds(day, tz_name)
    cells: dict[str, str] = {}
    facts_in = True
    for table, newest in marks.facts.items():
        if marks.purged_facts is not None and end <= marks.purged_facts:
            cells[table] = PURGED
        elif newest is None:
            cells[table] = NOT_JUDGED
        elif newest >= end:
            cells[table] = COMPLETE
        else:
            cells[table] = PENDING
            facts_in = False
    if marks.purged_aggregates is not None and end <= marks.purged_aggregates:
        cells[AGGREGATION] = PURGED
    elif not any(v in (COMPLETE, PENDING) for v in cells.values()):
        cells[AGGREGATION] = NOT_JUDGED
    else:
        waiting = any(start <= at < end for at in marks.pending)
        cells[AGGREGATION] = COMPLETE if facts_in and not waiting else PENDING
    levels = _levels(day, marks, cells.get(AGGREGATION, NOT_JUDGED))
    reasons: dict[str, str] = {}
    if any(MISSING in by_level.values() for by_level in levels.values()):
        cells[AGGREGATION] = MISSING
    elif cells.get(AGGREGATION) == COMPLETE:
        # D5: the newest re-aggregation asked of this day was refused: the aggregates are as
        # they were (complete by the marks), and the grid says the rebuild did not happen.
        asked = [r for r in marks.requests if r[0] <= day <= r[1]]
        if asked and asked[-1][2]:
            cells[AGGREGATION], reasons[AGGREGATION] = REFUSED, str(asked[-1][2])
    if marks.export_on:
        through = marks.exported_through
        cells[EXPORT_STAGE] = COMPLETE if through is not None and through >= end else PENDING
        if cells[EXPORT_STAGE] == COMPLETE and marks.chunks is not None:
            cells[EXPORT_STAGE] = _chunked(start, end, marks)
        held = [reason for s, e, reason in marks.holds if s < end and e > start]
        if held:
            cells[EXPORT_STAGE], reasons[EXPORT_STAGE] = HELD, held[0]
    return Day(day, start, end, cells, levels, reasons)


def _chunked(start: datetime, end: datetime, marks: Marks) -> str:
    """An exported day whose intervals are not all in chunk folders on disk is ``missing``
    (a chunk lost or deleted by hand); before the first chunk it is ``n/a`` (the export began
    later: ``start-date``), before the files' retention ``purged``."""
    chunks = marks.chunks or ()
    if marks.chunks_kept_from is not None and end <= marks.chunks_kept_from:
        return PURGED
    if not chunks or end <= chunks[0][0]:
        return NOT_JUDGED
    covered = max(start, chunks[0][0])
    for chunk_start, chunk_end in chunks:
        if chunk_end <= covered:
            continue
        if chunk_start > covered:
            return MISSING
        covered = chunk_end
        if covered >= end:
            return COMPLETE
    return MISSING


def _levels(day: date, marks: Marks, aggregation: str) -> dict[str, dict[str, str]]:
    """Q2's drill-down: per hierarchy whose fact table has rows that day, per level table
    present: ``missing`` when the marks say the day is aggregated but the level has no row
    (rows deleted, a rebuild lost), else the aggregation's own cell."""
    probed = marks.coverage.get(day.isoformat())
    if probed is None:
        return {}
    from gim_tasks.aggregate.registry import LEVELS

    found: dict[str, dict[str, str]] = {}
    for name, fact, tables in marks.hierarchies:
        if not probed.get(fact):
            continue  # no fact row that day: nothing to aggregate
        cells = {}
        for level, table in zip(LEVELS, tables, strict=True):
            if table not in probed:
                continue  # not created yet
            if aggregation == COMPLETE and not probed[table]:
                cells[level] = MISSING
            else:
                cells[level] = aggregation
        found[name] = cells
    return found


def grid(marks: Marks, last: date, count: int, tz_name: str) -> list[Day]:
    """``count`` days up to ``last``, newest first."""
    return [judge_day(last - timedelta(days=n), marks, tz_name) for n in range(count)]


def deadline_of(day: date, ready_by: time, tz_name: str) -> datetime:
    """Q1: ``ready-by`` on the local morning after ``day`` (S10 in a DST gap), UTC."""
    return resolve(datetime.combine(day + timedelta(days=1), ready_by), zone(tz_name)).astimezone(
        UTC
    )


@dataclass(frozen=True)
class Finding:
    condition: Condition
    day: date
    detail: str


def category_of(stage: str) -> str:
    """The data category of a grid stage, for ``ready-by``'s overrides: the facts are ETL."""
    return {AGGREGATION: "Aggregation", EXPORT_STAGE: "Export"}.get(stage, "ETL")


def stage_deadlines(
    day: date, stages: Iterable[str], ready_by: time | ReadyByValue, tz_name: str
) -> dict[str, datetime]:
    """Q1: each stage's deadline for ``day`` (``ready_by``: one time, or ``[monitor]
    ready-by``'s value with its per-category overrides)."""
    value = ready_by if isinstance(ready_by, ReadyByValue) else ReadyByValue(ready_by)
    return {stage: deadline_of(day, value.of(category_of(stage)), tz_name) for stage in stages}


def judge_deadlines(
    days: Iterable[Day],
    now: datetime,
    ready_by: time | ReadyByValue,
    tz_name: str,
    remaining: Mapping[str, float],
    epoch: datetime | None,
) -> list[Finding]:
    """Q1, Q2 (pure): per judged day at or after the scheduler's first day: ``deadline``
    when a stage is still pending past its deadline (``ready_by``: one time, or per category);
    else ``deadline-at-risk`` when now + a pending stage's remaining work (seconds) passes its
    deadline; ``incomplete-day`` when not complete behind a newer complete day."""
    found: list[Finding] = []
    first = wall(epoch, zone(tz_name)).date() if epoch is not None else None
    ordered = sorted(days, key=lambda d: d.day)
    newest_complete = max((d.day for d in ordered if d.complete), default=None)
    for day in ordered:
        if first is None or day.day < first or not day.judged or day.complete or day.end > now:
            continue
        pending = sorted(s for s, value in day.cells.items() if value in (PENDING, MISSING, HELD))
        words = ", ".join(pending)
        due = stage_deadlines(day.day, pending, ready_by, tz_name)
        late = [stage for stage in pending if now >= due[stage]]
        risky = [
            stage
            for stage in pending
            if now + timedelta(seconds=remaining.get(stage, 0.0)) >= due[stage]
        ]
        if late:
            deadline = min(due[stage] for stage in late)
            found.append(
                Finding(
                    Condition.DEADLINE,
                    day.day,
                    f"{day.day} is not complete by its ready-by {deadline:%Y-%m-%d %H:%M} UTC: "
                    f"pending {', '.join(late)} (Q1)",
                )
            )
        elif risky:
            deadline = min(due[stage] for stage in risky)
            left = max(remaining.get(stage, 0.0) for stage in risky)
            found.append(
                Finding(
                    Condition.DEADLINE_AT_RISK,
                    day.day,
                    f"{day.day} may miss its ready-by {deadline:%Y-%m-%d %H:%M} UTC: "
                    f"pending {', '.join(risky)}, about {left / 60:.0f} min of work left (Q1)",
                )
            )
        if newest_complete is not None and day.day < newest_complete:
            found.append(
                Finding(
                    Condition.INCOMPLETE_DAY,
                    day.day,
                    f"{day.day} is not complete ({words} pending) while {newest_complete} is: "
                    "a hole (Q2)",
                )
            )
    return found


# ----- reading the marks (I/O) --------------------------------------------------------------


def probe(conn: Connection, marks: Marks, days: Iterable[date], tz_name: str) -> Marks:
    """``marks`` with the data's coverage of ``days`` (Q2's ``missing``): one call of
    ``gim_day_coverage``, an index probe per day and table."""
    from dataclasses import replace

    from gim_tasks.aggregate.registry import HIERARCHIES, LEVELS

    wanted = sorted({d.isoformat() for d in days})
    present = conn.execute(
        sa.text("SELECT gim_day_coverage(CAST(:days AS date[]), :tz)"),
        {"days": wanted, "tz": tz_name},
    ).scalar_one()  # table -> the days it has rows on
    sets = {table: set(on) for table, on in present.items()}
    coverage = {day: {table: day in on for table, on in sets.items()} for day in wanted}
    hierarchies = tuple(
        (h.name, h.fact, tuple(h.table(level) for level in LEVELS)) for h in HIERARCHIES
    )
    return replace(marks, coverage=coverage, hierarchies=hierarchies)


def chunks_on_disk(options: Any, base: Any, now: datetime) -> tuple[Any, datetime | None]:
    """The export's chunk folders (names only: ``chunk-<start>-<end>``) and the oldest end the
    files' retention keeps; (None, None) when the folder cannot be read from this process
    (a web replica on another host)."""
    from gim_tasks.errors import GimError
    from gim_tasks.options.paths import resolve_output_directory

    try:
        folder = resolve_output_directory(options, base)
        names = [p.name for p in folder.glob("chunk-*")] if folder.is_dir() else None
    except (GimError, OSError):
        return None, None
    if names is None:
        return None, None
    found = []
    for name in names:
        try:
            _, first, last = name.split("-")
            found.append(
                (
                    datetime.strptime(first, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC),
                    datetime.strptime(last, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC),
                )
            )
        except ValueError:
            continue  # not ours
    keep = timedelta(days=int(options.get("gim-export", "days-to-keep-output-files")))
    return tuple(sorted(found)), now - keep


def load(conn: Connection, options: Any, now: datetime | None = None) -> Marks:
    """The marks, in a handful of reads (the newest fact per live-fed table is O4's data
    freshness: the web role reads no data row)."""
    from gim_tasks.monitor.mart_status import data_freshness, parse_iso

    now = now or datetime.now(UTC)
    facts = {
        item["table"]: parse_iso(item["data_time"])
        for item in sorted(data_freshness(conn, now, options), key=lambda item: item["table"])
        if item["category"] == "ETL" and item["slo_minutes"] is not None
    }
    pending = tuple(
        datetime.fromtimestamp(key, UTC)
        for key in conn.execute(
            sa.text("SELECT DISTINCT date_time_key FROM agg_pending ORDER BY 1")
        ).scalars()
    )
    through = exported_through(conn)
    purged: dict[str, datetime] = {
        row.what: row.purged_before
        for row in conn.execute(sa.text("SELECT what, purged_before FROM purge_mark"))
    }
    epoch = conn.execute(sa.select(scheduler_epoch.c.first_tick_at)).scalar_one_or_none()
    requests = tuple(
        (date.fromisoformat(row.start), date.fromisoformat(row.end), row.refused)
        for row in conn.execute(
            sa.text(
                "SELECT params->>'start' AS start, params->>'end' AS end, refused "
                "FROM agg_request WHERE done_at IS NOT NULL AND params ? 'start' "
                "AND params ? 'end' ORDER BY done_at, id"
            )
        )
    )
    holds = tuple(
        (row.chunk_start, row.chunk_end, row.reason)
        for row in conn.execute(
            sa.text(
                "SELECT chunk_start, chunk_end, reason FROM export_hold "
                "WHERE released_at IS NULL ORDER BY chunk_start"
            )
        )
    )
    chunks, kept_from = None, None
    if options.schedule().run_export:
        from gim_tasks.settings import get_settings

        chunks, kept_from = chunks_on_disk(options, get_settings().output_directory, now)
    return Marks(
        facts=facts,
        pending=pending,
        export_on=bool(options.schedule().run_export),
        exported_through=through,
        purged_facts=purged.get("facts"),
        purged_aggregates=purged.get("aggregates"),
        epoch=epoch,
        chunks=chunks,
        chunks_kept_from=kept_from,
        requests=requests,
        holds=holds,
    )


def listing(engine: Engine, count: int, now: datetime | None = None) -> dict[str, Any]:
    """``gim days``, ``GET /api/days``, the Days page: the grid, newest day first, and the
    failing quality checks of its days (Q3)."""
    from gim_tasks.monitor import checks
    from gim_tasks.options import store

    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        options = store.load_options(conn)
        tz_name = options.schedule().timezone
        today = wall(now, zone(tz_name)).date()
        shown = [today - timedelta(days=n) for n in range(count)]
        marks = probe(conn, load(conn, options, now), shown, tz_name)
        failing = checks.listing(conn, failed=True, since=shown[-1])
    ready_by = options.get("monitor", "ready-by")
    rows = grid(marks, today, count, tz_name)

    def due(row: Day) -> str:
        """The day's deadline: its latest stage's (every stage due complete by then)."""
        found = stage_deadlines(row.day, row.cells or [AGGREGATION], ready_by, tz_name)
        return max(found.values()).isoformat()

    return {
        "zone": tz_name,
        "ready_by": options.text("monitor", "ready-by"),
        "stages": list(rows[0].cells) if rows else [],
        "days": [{**row.as_dict(), "deadline": due(row)} for row in rows],
        "checks": failing,
    }


def remaining_work(
    options: Any, now: datetime, history: Mapping[str, Any], tables: Iterable[str]
) -> dict[str, float]:
    """Seconds of work left per stage if it started at its job's next slot: the wait for that
    slot plus the p95 of the job (Extract + Transform for the facts; the export job for the
    export; aggregation follows Transform continuously: the facts' time)."""
    from gim_tasks.runtime.limits import next_slots

    slots, _ = next_slots(options.schedule(), now)

    def p95(job: str) -> float:
        known = history.get(job)
        return float(known.p95_seconds) if known is not None else 0.0

    def wait(job: str) -> float:
        at = slots.get(job)
        return max(0.0, (at - now).total_seconds()) if at is not None else 0.0

    facts = wait(EXTRACT) + p95(EXTRACT) + p95(TRANSFORM)
    found = {AGGREGATION: facts, EXPORT_STAGE: max(facts, wait(EXPORT)) + p95(EXPORT)}
    return found | dict.fromkeys(tables, facts)


def check(conn: Connection, options: Any, now: datetime) -> list[Finding]:
    """The watchdog's pass (O2 with Q1, Q2): open one incident per day and condition found,
    resolve those whose day no longer is (complete, or its deadline came: at-risk gives way to
    deadline)."""
    from gim_tasks.monitor import checks, incidents
    from gim_tasks.runtime.limits import load_history

    tz_name = options.schedule().timezone
    today = wall(now, zone(tz_name)).date()
    recent = [today - timedelta(days=n) for n in range(LOOK_BACK_DAYS)]
    marks = probe(conn, load(conn, options, now), recent, tz_name)
    days = grid(marks, today, LOOK_BACK_DAYS, tz_name)
    found = judge_deadlines(
        days,
        now,
        options.get("monitor", "ready-by"),
        tz_name,
        remaining_work(options, now, load_history(conn), marks.facts),
        marks.epoch,
    )
    for condition in (Condition.DEADLINE, Condition.DEADLINE_AT_RISK, Condition.INCOMPLETE_DAY):
        # Only data days carry these conditions: every other open one is resolved.
        current = [subject(f.day) for f in found if f.condition == condition]
        incidents.resolve(conn, condition, except_jobs=current)
    # Q3: the last days, and any older day whose chunk is still held (a hold nobody resolved
    # keeps its incident open past the look-back).
    held_since = min(
        (wall(start, zone(tz_name)).date() for start, _, _ in marks.holds), default=recent[-1]
    )
    for day, failing in checks.failing_days(conn, min(recent[-1], held_since)).items():
        found.append(
            Finding(
                Condition.CHECK_FAILED,
                day,
                f"{day} fails {len(failing)} quality check(s): {'; '.join(failing[:5])} (Q3)",
            )
        )
    incidents.resolve(
        conn,
        Condition.CHECK_FAILED,
        except_jobs=[subject(f.day) for f in found if f.condition == Condition.CHECK_FAILED],
    )
    for finding in found:
        incidents.ensure_open(conn, subject(finding.day), finding.condition, finding.detail)
    return found


def subject(day: date) -> str:
    """An incident's subject for a data day (in place of a job: one open per day)."""
    return f"data day {day.isoformat()}"
