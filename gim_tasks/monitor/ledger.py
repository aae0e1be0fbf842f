"""The firing ledger (SPEC O1): every planned firing, written ahead, with what became of it.

The beat writes the plan of the next ``HORIZON`` (26 h; extended when less than 24 h is left)
from the same pure plan as ``gim schedule plan``, one ``firing`` row per firing id: ETL slots
(the start of Job_ExtractICON), maintenance, statistics, export, aggregation window opens and
closes. When the ``[schedule]`` options change, the undecided future rows are planned again.

Verdicts (first one stands; a later decision only fills in the run):

- the beat's decisions, in the tick's transaction (``record``, called by ``beat.carry_out``):
  a launch is ``on-time`` within ``[monitor] grace-seconds`` of its instant, else ``late``
  (lag kept); a hold ``held``; a rule's skip ``skipped``; a C2 block ``blocked``; S12's skip of
  a firing missed while the beat was down ``missed``; earlier undecided firings of a stream the
  beat collapsed into one catch-up (S12) ``missed``;
- window opens and closes the engine acts on without a launch (``settle``): a close is judged
  when its instant passes; an open while aggregation already runs or maintenance runs is
  ``held`` (the window's run starts after it), while the check blocks aggregation
  ``blocked``;
- the watchdog (``monitor/watchdog.py``, another process): any firing still undecided at its
  instant + grace is ``missed``.

A first start raises no alarm (issue 31): the first beat tick ever records its instant
(``scheduler_epoch``), and no firing planned before it is planned, judged or counted, so a
catch-up launch of a slot planned before the system existed is neither late nor missed.

Concurrency: the verdict update is one ``INSERT ... ON CONFLICT (firing_id) DO UPDATE`` whose
``COALESCE`` keeps a verdict already written, so the beat and the watchdog racing on a firing
leave exactly one verdict, whichever commits first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from gim_tasks.db.tables import firing, scheduler_epoch
from gim_tasks.errors import GimError
from gim_tasks.lifecycle import StopKind, Trigger, Verdict
from gim_tasks.monitor import notes
from gim_tasks.schedule import plan
from gim_tasks.schedule.engine import (
    Action,
    Hold,
    Launch,
    Skip,
    Stop,
    Tick,
)
from gim_tasks.schedule.firings import close_id, firing_id
from gim_tasks.schedule.gate import HELD_VERDICTS, Ask, gate, held
from gim_tasks.schedule.holds import Holds
from gim_tasks.schedule.jobs import AGGREGATE, JOB_NAMES, STREAMED
from gim_tasks.schedule.localtime import resolve, zone
from gim_tasks.schedule.options import ScheduleOptions
from gim_tasks.schedule.state import SchedulerState

#: How far ahead the ledger is written, and when it is extended (O1: at least 24 h ahead).
HORIZON = timedelta(hours=26)
EXTEND_BELOW = timedelta(hours=24)
#: Ledger rows older than this are deleted when the plan is extended.
KEEP = timedelta(days=100)

#: Each streamed job's ledger stream (the catalogue's ``JobSpec.ledger``).
STREAMS = {spec.name: spec.ledger for spec in STREAMED if spec.ledger}
WINDOW_OPEN, WINDOW_CLOSE = "window-open", "window-close"
#: The ledger stream of runs planned at a set time (P4).
AT_STREAM = "at"


def event_firing_id(event: plan.Event) -> str:
    """The ledger's firing id of a planned event: the engine's (S11), a window close its own."""
    if event.job == AGGREGATE and event.event == "stop":
        return close_id(event.at)
    return firing_id(event.job, event.at)


def stream_of(job: str, event: str = "start") -> str:
    if job == AGGREGATE:
        return WINDOW_OPEN if event == "start" else WINDOW_CLOSE
    return STREAMS[job]


def planned(options: ScheduleOptions, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Ledger rows of every firing in [start, end)."""
    return [
        {
            "firing_id": event_firing_id(event),
            "stream": stream_of(event.job, event.event),
            "job": event.job,
            "planned_at": event.at.astimezone(UTC),
        }
        for event in plan.plan(options, start, end)
    ]


@dataclass(frozen=True)
class Judge:
    """What the beat's ``carry_out`` needs to judge a tick's firings."""

    now: datetime
    grace: float  # [monitor] grace-seconds
    late_limit: float  # [monitor] late-alert-seconds
    horizon: Horizon
    state: SchedulerState


@dataclass
class Horizon:
    """What this beat wrote: for which options, up to when; the next undecided window event."""

    options: ScheduleOptions | None = None
    through: datetime | None = None
    next_window: datetime | None = None
    epoch: datetime | None = None  # the first beat tick ever against this database


def epoch(conn: Connection, now: datetime) -> datetime:
    """The instant of the first beat tick against this database; ``now`` if this is it. The
    one-row table's primary key makes a second beat's insert a no-op: the first commit wins."""
    conn.execute(
        insert(scheduler_epoch)
        .values(id=True, first_tick_at=now)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    return conn.execute(sa.select(scheduler_epoch.c.first_tick_at)).scalar_one()


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(firing).on_conflict_do_nothing(index_elements=["firing_id"]), rows)


def needs_planning(horizon: Horizon, options: ScheduleOptions, now: datetime) -> bool:
    """Whether :func:`keep_planned` has work: the beat asks every tick, cheaply."""
    return (
        horizon.options != options
        or horizon.through is None
        or horizon.through - now < EXTEND_BELOW
    )


def keep_planned(
    conn: Connection, horizon: Horizon, options: ScheduleOptions, now: datetime
) -> bool:
    """Write the plan at least 24 h ahead; plan the undecided future again when the options
    changed (or this beat just started). Returns True when it wrote anything."""
    if not needs_planning(horizon, options, now):
        return False
    if horizon.epoch is None:
        horizon.epoch = epoch(conn, now)
    if horizon.options != options:
        # Firings due now or earlier keep their rows: the beat or the watchdog judges them.
        # A run planned at a set time (P4, stream "at") is not the options': it stays.
        conn.execute(
            sa.delete(firing).where(
                firing.c.verdict.is_(None), firing.c.planned_at > now, firing.c.stream != AT_STREAM
            )
        )
        _insert(conn, planned(options, now, now + HORIZON))
        horizon.options, horizon.through = options, now + HORIZON
    else:
        start = horizon.through or now
        _insert(conn, planned(options, start, now + HORIZON))
        horizon.through = now + HORIZON
        conn.execute(sa.delete(firing).where(firing.c.planned_at < now - KEEP))
    horizon.next_window = _next_window(conn)
    return True


def _next_window(conn: Connection) -> datetime | None:
    return conn.execute(
        sa.select(sa.func.min(firing.c.planned_at)).where(
            firing.c.verdict.is_(None), firing.c.stream.in_((WINDOW_OPEN, WINDOW_CLOSE))
        )
    ).scalar_one()


def _judge(
    conn: Connection,
    action: Launch | Hold | Skip,
    verdict: Verdict,
    lag: float,
    now: datetime,
    run_id: int | None,
) -> None:
    statement = insert(firing).values(
        firing_id=action.firing_id,
        stream=stream_of(action.job),
        job=action.job,
        planned_at=action.planned_at,
        verdict=verdict,
        decided_at=now,
        lag_seconds=lag,
        reason=action.reason,
        run_id=run_id,
    )
    kept = statement.excluded
    # The first verdict stands (the watchdog may have said "missed"); the run is filled in.
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["firing_id"],
            set_={
                column: sa.func.coalesce(firing.c[column], kept[column])
                for column in ("verdict", "decided_at", "lag_seconds", "reason", "run_id")
            },
        )
    )


def timeliness(lag: float, grace: float) -> Verdict:
    """O1: a firing acted on within the grace is on time, later is late."""
    return Verdict.ON_TIME if lag <= grace else Verdict.LATE


def verdict_of(action: Action, lag: float, grace: float) -> Verdict | None:
    """The ledger's verdict on a firing the engine decided by ``action`` (None: not a planned
    firing, e.g. a restart inside a window, Transform after Extract, M3's resumption)."""
    if action.job not in STREAMS and action.job != AGGREGATE:
        return None
    if isinstance(action, Launch):
        if action.trigger != Trigger.SCHEDULED:
            return None
        return timeliness(lag, grace)
    if isinstance(action, Hold):
        return Verdict.HELD
    if isinstance(action, Skip):
        if action.operator is not None:
            return action.operator  # P1-P3
        if action.blocked:
            return Verdict.BLOCKED
        return Verdict.MISSED if action.missed else Verdict.SKIPPED
    return None


@dataclass(frozen=True)
class Judged:
    job: str
    verdict: Verdict
    lag: float
    run_id: int | None


def record(
    conn: Connection,
    decided: Iterable[tuple[Action, int | None]],
    now: datetime,
    grace: float,
    since: datetime | None = None,
    holds: Holds | None = None,
    tz: Any = UTC,
) -> list[Judged]:
    """Verdicts of the firings this tick decided (``decided``: each action with the run it
    recorded). Earlier undecided firings of a stream the engine collapsed into this one (S12)
    are missed. A firing planned before ``since`` (the scheduler's epoch) is not judged: the
    first start's catch-up of a slot planned before the system existed raises no alarm. The
    collapsed firings an operator's hold covers (``holds``) get its verdict (P1-P3). Runs in
    the tick's transaction (beat.carry_out)."""
    judged = []
    for action, run_id in decided:
        if not isinstance(action, Launch | Hold | Skip):
            continue
        if since is not None and action.planned_at < since:
            continue
        lag = (now - action.planned_at).total_seconds()
        verdict = verdict_of(action, lag, grace)
        if verdict is None:
            continue
        _judge(conn, action, verdict, lag, now, run_id)
        judged.append(Judged(action.job, verdict, lag, run_id))
        if action.job in STREAMS:
            earlier = (
                firing.c.job == action.job,
                firing.c.verdict.is_(None),
                firing.c.planned_at < action.planned_at,
            )
            caught_up = action.planned_at.astimezone(UTC).isoformat()
            _miss(
                conn,
                earlier,
                now,
                f"not handled: the scheduler caught up with the firing planned at {caught_up} "
                "instead (S12)",
                holds,
                tz,
            )
    return judged


def settle_windows(
    conn: Connection,
    horizon: Horizon,
    tick: Tick,
    state: SchedulerState,
    now: datetime,
    grace: float,
) -> None:
    """Judge the aggregation window events due by ``now`` that no launch decided: a close
    when its instant passed; an open that the engine held back (aggregation already running,
    maintenance, a block of the check). Cheap when nothing is due: one comparison."""
    if horizon.next_window is None or horizon.next_window > now:
        return
    due = conn.execute(
        sa.select(firing.c.firing_id, firing.c.stream, firing.c.planned_at).where(
            firing.c.verdict.is_(None),
            firing.c.stream.in_((WINDOW_OPEN, WINDOW_CLOSE)),
            firing.c.planned_at <= now,
        )
    ).all()
    stops = [a for a in tick.actions if isinstance(a, Stop) and a.kind == StopKind.WINDOW_END]
    tz = zone(horizon.options.timezone) if horizon.options else UTC
    for row in due:
        lag = (now - row.planned_at).total_seconds()
        opening = (row.firing_id, row.planned_at)
        verdict: Verdict | None = None
        run_id = None
        if row.stream == WINDOW_CLOSE:
            verdict = timeliness(lag, grace)
            reason = "aggregation window closed (S7)"
            if stops:
                run_id = stops[0].run_id
                reason += f": stop of run {run_id} requested"
        elif (why := tick.blocked.get(AGGREGATE)) is not None:
            verdict, reason = Verdict.BLOCKED, why
        elif not (decision := gate(AGGREGATE, Ask.SCHEDULER, state, tz=tz, firing=opening)).go:
            # An operator's hold (P1-P3); else maintenance (S7) or the window's earlier run
            # (S2): the window's own run starts after it, and its launch fills in the run.
            verdict = HELD_VERDICTS.get(decision.row or "", Verdict.HELD)
            reason = decision.reason or ""
        if verdict is not None:
            conn.execute(
                sa.update(firing)
                .where(firing.c.firing_id == row.firing_id, firing.c.verdict.is_(None))
                .values(
                    verdict=verdict, decided_at=now, lag_seconds=lag, reason=reason, run_id=run_id
                )
            )
    horizon.next_window = _next_window(conn)


def held_starts(options: ScheduleOptions, holds: Holds, events: list[Any]) -> dict[int, str]:
    """Which of a plan's starts (``plan.plan``) an operator's hold skips, in words, by index
    (``gim schedule plan``, the schedule preview)."""
    tz, found = zone(options.timezone), {}
    for i, event in enumerate(events):
        if event.event == "start":
            verdict = held(event.job, holds, (firing_id(event.job, event.at), event.at), tz)
            if verdict is not None:
                found[i] = f"{verdict[0]}: {verdict[1]}"
    return found


def _judge_held(
    conn: Connection, rows: Iterable[Any], now: datetime, holds: Holds | None, tz: Any
) -> None:
    """Give each undecided firing in ``rows`` an operator's hold covers its held verdict."""
    if not holds:
        return
    for row in rows:
        found = held(row.job, holds, (row.firing_id, row.planned_at), tz)
        if found is not None:
            conn.execute(
                sa.update(firing)
                .where(firing.c.firing_id == row.firing_id, firing.c.verdict.is_(None))
                .values(verdict=found[0], decided_at=now, reason=found[1])
            )


def mark_missed(
    conn: Connection, now: datetime, grace: float, holds: Holds | None = None, tz: Any = UTC
) -> list[Any]:
    """The watchdog's verdict: every firing still undecided at planned + grace is missed,
    unless an operator held it (P1-P3: ``paused``, ``operator-skip``, ``blackout``, no alarm).
    Returns (job, firing_id, planned_at) of each missed one."""
    overdue = firing.c.verdict.is_(None), firing.c.planned_at < now - timedelta(seconds=grace)
    reason = (
        f"no decision within {grace:g} s of its instant: the scheduler was down or stalled (O2)"
    )
    return _miss(conn, overdue, now, reason, holds, tz)


def _miss(
    conn: Connection,
    where: tuple[Any, ...],
    now: datetime,
    reason: str,
    holds: Holds | None,
    tz: Any,
) -> list[Any]:
    """The undecided firings ``where`` selects are missed, but those an operator's hold
    covers get its verdict (P1-P3). Returns (job, firing_id, planned_at) of the missed."""
    if holds:
        due = sa.select(firing.c.firing_id, firing.c.job, firing.c.planned_at).where(*where)
        _judge_held(conn, conn.execute(due).all(), now, holds, tz)
    return list(
        conn.execute(
            sa.update(firing)
            .where(*where)
            .values(verdict=Verdict.MISSED, decided_at=now, reason=reason)
            .returning(firing.c.job, firing.c.firing_id, firing.c.planned_at)
        )
    )


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FiringQuery:
    job: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    verdict: str | None = None  # a Verdict, or "pending" for undecided
    limit: int = 500


def query(conn: Connection, q: FiringQuery) -> list[dict[str, Any]]:
    """Ledger rows, oldest first, as JSON-ready dicts (``gim firings``, ``GET /api/firings``)."""
    stmt = sa.select(firing).order_by(firing.c.planned_at, firing.c.firing_id).limit(q.limit)
    if q.job:
        stmt = stmt.where(firing.c.job == q.job)
    if q.start:
        stmt = stmt.where(firing.c.planned_at >= q.start)
    if q.end:
        stmt = stmt.where(firing.c.planned_at < q.end)
    if q.verdict == "pending":
        stmt = stmt.where(firing.c.verdict.is_(None))
    elif q.verdict:
        stmt = stmt.where(firing.c.verdict == q.verdict)
    rows = conn.execute(stmt).all()
    written = notes.notes_of(conn, notes.NoteOn.FIRING, [row.firing_id for row in rows])
    return [
        {
            "firing_id": row.firing_id,
            "stream": row.stream,
            "job": row.job,
            "planned_at": row.planned_at.isoformat(),
            "verdict": row.verdict,
            "lag_seconds": round(row.lag_seconds, 3) if row.lag_seconds is not None else None,
            "reason": row.reason,
            "run_id": row.run_id,
            "decided_at": row.decided_at.isoformat() if row.decided_at else None,
            "notes": written.get(row.firing_id, []),
        }
        for row in rows
    ]


def parse_when(text: str, tz_name: str, what: str) -> datetime:
    """``--from``/``--to`` (and the API's ``from``/``to``): a date or local date and time in
    the schedule's zone, or an ISO instant with its offset."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise GimError(
            f"{what} '{text}' is not a date YYYY-MM-DD, a local time YYYY-MM-DDTHH:MM or an "
            "ISO instant such as 2026-11-30T08:00:00+00:00"
        ) from None
    return value if value.tzinfo is not None else resolve(value, zone(tz_name))


def firing_query(
    job: str | None,
    start: str | None,
    end: str | None,
    verdict: str | None,
    limit: int,
    tz_name: str,
    now: datetime | None = None,
) -> FiringQuery:
    """Filters from their texts, each checked with an error that names what is allowed.
    Without ``start``: from 24 hours before ``now``."""
    if job and job not in JOB_NAMES:
        raise GimError(f"job '{job}' is not one of {', '.join(JOB_NAMES)}")
    allowed = [v.value for v in Verdict] + ["pending"]
    if verdict and verdict not in allowed:
        raise GimError(f"verdict '{verdict}' is not one of {', '.join(allowed)}")
    since = (
        parse_when(start, tz_name, "from")
        if start
        else (now or datetime.now(UTC)) - timedelta(hours=24)
    )
    until = parse_when(end, tz_name, "to") if end else None
    if until is not None and until <= since:
        raise GimError(f"'to' ({until.isoformat()}) is not after 'from' ({since.isoformat()})")
    return FiringQuery(job or None, since, until, verdict or None, limit)


def local_text(iso: str, tz_name: str) -> str:
    return datetime.fromisoformat(iso).astimezone(zone(tz_name)).strftime("%Y-%m-%d %H:%M:%S")
