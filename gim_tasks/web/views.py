"""What the Monitor Jobs pages and the API show (SPEC A1, A2, A4), as plain data, so that the
HTML pages and the JSON API cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gim_tasks.db.mart_tables import discard
from gim_tasks.db.tables import RUN_STATES, job_run
from gim_tasks.errors import GimError, aware_instant
from gim_tasks.lifecycle import (
    FAILURE,
    OPERATOR_STOP,
    PLANNED_STOPS,
    SUCCESS,
    TRIGGERS,
    Retry,
    RunState,
    SkipKind,
    StopKind,
    Trigger,
    outcome,
)
from gim_tasks.monitor import notes
from gim_tasks.monitor.notify import notifications_of
from gim_tasks.monitor.timeline import FIRST_YEAR, LAST_YEAR
from gim_tasks.options import store
from gim_tasks.options.values import Options
from gim_tasks.runtime import parts
from gim_tasks.runtime.listing import iso, run_record
from gim_tasks.schedule.engine import RESTART, SCHEDULED
from gim_tasks.schedule.jobs import (
    BY_NAME,
    CATEGORIES,
)
from gim_tasks.schedule.localtime import zone
from gim_tasks.schedule.plan import next_run_table

#: Triggers of runs the status summary counts (A4: scheduled ones; a restart is the scheduler's).
SUMMARY_TRIGGERS = (SCHEDULED, RESTART, Trigger.RETRY)


def check_category(category: str | None) -> str | None:
    if not category:
        return None
    for known in CATEGORIES:
        if known.lower() == category.lower():
            return known
    raise GimError(f"unknown category '{category}'; categories are {', '.join(CATEGORIES)}")


def creator(options: Options, job: str) -> str:
    changes = [
        options.changes[("schedule", name)]
        for name in BY_NAME[job].scheduled_by
        if ("schedule", name) in options.changes
    ]
    return max(changes, key=lambda change: change.at).actor if changes else "-"


def scheduled_jobs(
    engine: Engine, now: datetime, category: str | None = None
) -> list[dict[str, Any]]:
    """A1: one row per job: active, name, category, creator, schedule in words, next run."""
    from gim_tasks.runtime import holds

    wanted = check_category(category)
    with engine.connect() as conn:
        options = store.load_options(conn)
        held = holds.load(conn, now)
    rows = []
    for row in next_run_table(options.schedule(), now, held):
        info = BY_NAME[row.job]
        if wanted and info.category != wanted:
            continue
        rows.append(
            {
                "name": row.job,
                "category": info.category,
                "active": row.active,
                "creator": creator(options, row.job),
                "schedule": row.schedule,
                "next_run": row.next_run.isoformat() if row.next_run else None,
                "manual": info.manual,
                "description": info.description,
                "scheduled_by": list(info.scheduled_by),
                "paused": _paused_words(held.pause_of(row.job)),
                "pausable": info.fires != "after-extract",
            }
        )
    return rows


def _paused_words(pause: Any) -> str | None:
    """P1: how the Scheduled list says a job is paused (None: it is not)."""
    if pause is None:
        return None
    whole = " (every job)" if pause.job == "*" else ""
    until = f" until {pause.until.isoformat()}" if pause.until else ""
    return f"{pause.words}{whole}{until}"


def schedule_zone(engine: Engine) -> str:
    with engine.connect() as conn:
        return store.load_options(conn).schedule().timezone


#: Sort orders of History (A6): by start time (runs that never started by creation), newest
#: or oldest first, or by state (then newest first).
SORTS = ("-started_at", "started_at", "state")
OUTCOMES = (SUCCESS, FAILURE, OPERATOR_STOP)
LISTS = ("all", "running", "scheduled", "history", "skipped")


def _csv(text: str | None, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Comma-separated values, each one of ``allowed``; bad ones named with what is allowed."""
    values = tuple(v.strip() for v in (text or "").split(",") if v.strip())
    for value in values:
        if value not in allowed:
            raise GimError(f"unknown {what} '{value}'; {what}s are {', '.join(allowed)}")
    return values


def _day(text: str | None, name: str) -> date | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise GimError(f"{name} '{text}' is not a date (YYYY-MM-DD)") from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:  # the API document's range (DAY_PATTERN)
        raise GimError(f"{name} {day} is not a day from {FIRST_YEAR} to {LAST_YEAR}")
    return day


@dataclass(frozen=True)
class RunQuery:
    """What History (A6) and ``GET /api/runs`` select: filters, order and page. Built from
    text by :meth:`parse`, which names every bad value and what is allowed."""

    which: str = "all"
    job: str | None = None
    category: str | None = None
    states: tuple[str, ...] = ()
    since_day: date | None = None  # local days of the schedule's zone, both included
    until_day: date | None = None
    outcomes: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    ended_since: datetime | None = None  # the summary's window: exactly its runs
    sort: str = "-started_at"
    limit: int = 100
    offset: int = 0

    @classmethod
    def parse(
        cls,
        which: str = "all",
        job: str | None = None,
        category: str | None = None,
        state: str | None = None,
        day: str | None = None,
        since: str | None = None,
        until: str | None = None,
        outcome: str | None = None,
        trigger: str | None = None,
        ended_since: str | None = None,
        sort: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> RunQuery:
        if which not in LISTS:
            raise GimError(f"unknown list '{which}'; lists are {', '.join(LISTS)}")
        if job and job not in BY_NAME:
            raise GimError(f"unknown job '{job}'; jobs are {', '.join(BY_NAME)}")
        first, last = _day(since, "from"), _day(until, "to")
        if day:  # one local day: from = to = day
            first = last = _day(day, "date")
        if first and last and first > last:
            raise GimError(f"from {first} is after to {last}")
        instant = None
        if ended_since:
            instant = aware_instant(ended_since, "ended_since")
            if not FIRST_YEAR <= instant.year <= LAST_YEAR:  # as every day of the API (issue 41)
                raise GimError(
                    f"ended_since {instant.isoformat()} is not from {FIRST_YEAR} to {LAST_YEAR}"
                )
        if sort and sort not in SORTS:
            raise GimError(f"unknown sort '{sort}'; sorts are {', '.join(SORTS)}")
        if not 1 <= limit <= 1000 or offset < 0:
            raise GimError(f"limit must be 1-1000 and offset 0 or more, not {limit}, {offset}")
        return cls(
            which=which,
            job=job or None,
            category=check_category(category),
            states=_csv(state, RUN_STATES, "state"),
            since_day=first,
            until_day=last,
            outcomes=_csv(outcome, OUTCOMES, "outcome"),
            triggers=_csv(trigger, TRIGGERS, "trigger"),
            ended_since=instant,
            sort=sort or "-started_at",
            limit=limit,
            offset=offset,
        )

    def where(self, tz_name: str) -> list[sa.ColumnElement[bool]]:
        c = job_run.c
        where: list[sa.ColumnElement[bool]] = []
        if self.which == "running":
            where.append(c.state == RunState.RUNNING)
        elif self.which == "scheduled":
            where.append(c.state == RunState.SCHEDULED)
        elif self.which == "history":
            where.append(c.ended_at.is_not(None))
        # R4: skips a rule requires are expected, not events: only the skipped list shows them.
        if self.which == "skipped":
            where.append(c.skip == SkipKind.RULE)
        else:
            where.append(c.skip.is_distinct_from(SkipKind.RULE))
        if self.job:
            where.append(c.job == self.job)
        if self.category:
            where.append(c.job.in_([n for n, i in BY_NAME.items() if i.category == self.category]))
        if self.states:
            where.append(c.state.in_(self.states))
        tz = zone(tz_name)
        if self.since_day:
            where.append(c.created_at >= datetime.combine(self.since_day, time(), tz))
        if self.until_day:
            end = datetime.combine(self.until_day + timedelta(days=1), time(), tz)
            where.append(c.created_at < end)
        if self.outcomes:
            where.append(sa.or_(*(outcome_clause(name) for name in self.outcomes)))
        if self.triggers:
            where.append(c.trigger.in_(self.triggers))
        if self.ended_since:
            where.append(c.ended_at >= self.ended_since)
        return where

    def order(self) -> list[sa.ColumnElement[Any]]:
        c = job_run.c
        if self.sort == "state":
            return [c.state, c.id.desc()]
        began = sa.func.coalesce(c.started_at, c.created_at)
        return [began, c.id] if self.sort == "started_at" else [began.desc(), c.id.desc()]


def outcome_clause(name: str) -> sa.ColumnElement[bool]:
    """R4 in SQL: the runs :func:`gim_tasks.lifecycle.outcome` calls ``name`` (a test checks
    the two agree on every state, stop kind and skip)."""
    c = job_run.c
    planned = [kind.value for kind in PLANNED_STOPS]
    if name == SUCCESS:
        return sa.or_(
            c.state.in_((RunState.COMPLETED, RunState.COMPLETED_WITH_WARNINGS)),
            sa.and_(c.state == RunState.STOPPED, c.stop_kind.in_(planned)),
        )
    if name == OPERATOR_STOP:
        return sa.and_(c.state == RunState.STOPPED, c.stop_kind == StopKind.OPERATOR)
    return sa.or_(
        c.state == RunState.FAILED,
        sa.and_(
            c.state == RunState.STOPPED,
            sa.or_(c.stop_kind.is_(None), c.stop_kind.not_in([*planned, StopKind.OPERATOR])),
        ),
        sa.and_(c.state == RunState.REJECTED, c.skip == SkipKind.BLOCKED),
    )


def run_dict(r: Any) -> dict[str, Any]:
    """A run for the pages and the API: ``gim jobs``'s record and what the web shows more."""
    duration = None
    if r.started_at is not None and r.ended_at is not None:
        duration = round((r.ended_at - r.started_at).total_seconds(), 3)
    return {
        **run_record(r),
        "category": BY_NAME[r.job].category if r.job in BY_NAME else None,
        "params": r.params,
        "created_at": iso(r.created_at),
        "duration_seconds": duration,
        "worker": r.worker,
        "stop_requested": r.stop_requested_at is not None,
        "summary": r.summary,
        "outcome": outcome(r.state, r.stop_kind, r.skip),  # R4
    }


def runs(engine: Engine, query: RunQuery) -> list[dict[str, Any]]:
    """The runs ``query`` selects, in its order, one page."""
    return page_of_runs(engine, query, count=False)["runs"]


def page_of_runs(engine: Engine, query: RunQuery, count: bool = True) -> dict[str, Any]:
    """One page of runs and (with ``count``) how many the filters select in all."""
    tz_name = schedule_zone(engine) if query.since_day or query.until_day else "UTC"
    where = query.where(tz_name)
    select = (
        sa.select(job_run)
        .where(*where)
        .order_by(*query.order())
        .limit(query.limit)
        .offset(query.offset)
    )
    with engine.connect() as conn:
        found = [run_dict(r) for r in conn.execute(select).all()]
        counted = notes.notes_of(conn, notes.NoteOn.RUN, [r["id"] for r in found])
        for r in found:  # P7: History shows an icon on a run with notes
            r["note_count"] = len(counted.get(str(r["id"]), []))
        total = None
        if count:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(job_run).where(*where)
            ).scalar_one()
    return {"runs": found, "total": total, "limit": query.limit, "offset": query.offset}


def run_detail(engine: Engine, run_id: int, discards: int = 100) -> dict[str, Any] | None:
    """A2 detail: the run, the discards it produced (first ``discards``) and its mails."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(job_run).where(job_run.c.id == run_id)).one_or_none()
        if row is None:
            return None
        detail = run_dict(row)
        detail |= _limits_of(conn, row.job)
        detail["notes"] = notes.notes_of(conn, notes.NoteOn.RUN, [run_id]).get(str(run_id), [])
        detail["note_count"] = len(detail["notes"])
        detail["discard_count"] = conn.execute(
            sa.select(sa.func.count()).select_from(discard).where(discard.c.run_id == run_id)
        ).scalar_one()
        detail["discards"] = [
            {
                "source_table": d.source_table,
                "source_id": d.source_id,
                "idb_id": d.idb_id,
                "reason": d.reason,
            }
            for d in conn.execute(
                sa.select(discard)
                .where(discard.c.run_id == run_id)
                .order_by(discard.c.id)
                .limit(discards)
            ).all()
        ]
        detail["parts"] = parts.of_run(conn, run_id)  # H2: an Extract run's parts
        detail["notifications"] = [
            {
                "recipient": n["recipient"],
                "state": n["state"],
                "attempts": n["attempts"],
                "last_error": n["last_error"],
                "sent_at": n["sent_at"].isoformat() if n["sent_at"] else None,
            }
            for n in notifications_of(conn, run_id)
        ]
    return detail


def _limits_of(conn: Any, job: str) -> dict[str, Any]:
    """L1, L2 on the run page: the job's time limit in force and its p95 yardstick."""
    from gim_tasks.options.types import span_text
    from gim_tasks.runtime.limits import load_history

    options = store.load_options(conn)
    limit = next(
        (f"{span_text(s)} ({a})" for j, s, a in options.get("limits", "max-runtime") if j == job),
        None,
    )
    known = load_history(conn).get(job)
    return {
        "time_limit": limit,
        "p95_seconds": round(known.p95_seconds, 3) if known is not None else None,
        "p95_successes": known.successes if known is not None else 0,
    }


def summary(engine: Engine, days: int, now: datetime | None = None) -> dict[str, Any]:
    """A4: the last ``days`` days per category: scheduled runs ended (manual runs are not
    counted, as in Alma), failures by R4 (a planned stop is a success, an operator's stop
    neither), the failed runs. Counted in SQL per job (R4's ``outcome_clause``) over
    ``ix_job_run_ended``; only the failed runs come back as rows (every page shows the strip:
    it summed a week of runs in Python per page, 35 ms at 65,000 runs, issue 40)."""
    if not 1 <= days <= 366:
        raise GimError(f"days must be 1-366, not {days}")
    since = (now or datetime.now(UTC)) - timedelta(days=days)
    c = job_run.c
    counted = (
        c.ended_at >= since,
        c.state != RunState.CANCELLED,
        # R4: a rule's skip is no event; a firing blocked by the check is a failure
        sa.or_(c.state != RunState.REJECTED, c.skip == SkipKind.BLOCKED),
        c.trigger.in_(SUMMARY_TRIGGERS),
        # L3: one outcome per firing: an attempt retried (or to be) is not one
        sa.or_(c.retry.is_(None), c.retry == Retry.FINAL),
    )
    failure = outcome_clause(FAILURE)
    with engine.connect() as conn:
        per_job = conn.execute(
            sa.select(c.job, sa.func.count(), sa.func.count().filter(failure))
            .where(*counted)
            .group_by(c.job)
        ).all()
        failed = conn.execute(
            sa.select(c.id, c.job, c.state, c.skip, c.ended_at, c.error, c.reason)
            .where(*counted, failure)
            .order_by(c.id.desc())
        ).all()
    categories: dict[str, dict[str, Any]] = {
        c: {"category": c, "runs": 0, "failures": 0, "failed": []} for c in CATEGORIES
    }
    for job, runs, failures in per_job:
        if job not in BY_NAME:
            continue  # a site job this process was not given
        entry: dict[str, Any] = categories[BY_NAME[job].category]
        entry["runs"] += runs
        entry["failures"] += failures
    for row in failed:
        if row.job in BY_NAME:
            categories[BY_NAME[row.job].category]["failed"].append(
                {
                    "id": row.id,
                    "job": row.job,
                    "state": row.state,
                    "ended_at": row.ended_at.isoformat(),
                    "error": row.error or (row.reason if row.skip else None),
                }
            )
    return {"days": days, "since": since.isoformat(), "categories": list(categories.values())}
