"""The firing engine: options + an aware "now" + a snapshot of run state -> decisions.

Pure: no I/O, no clock. The beat calls :func:`decide` on every tick and carries the decisions
out (launch, hold as Scheduled, release, stop, record a skipped firing), then persists the new
cursors. Every decision carries the reason an operator will read in the run history.

Rules implemented (SPEC §4): S1 the ETL grid; S3 Transform after Extract; S7 aggregation
windows with restart and stop at window end; S9 run flags; S10 via the streams' local-time
resolution; S11 firing ids; S12 catch-up after downtime. Who waits for whom (S1's pending
cycle, S2, S4, S5, S6, S7's pause, S8, S13) is the exclusivity gate's table
(:mod:`gim_tasks.schedule.gate`), asked for every firing, release and window; the jobs and
their streams are the catalogue's (:mod:`gim_tasks.schedule.jobs`). C2: while the
configuration check reports an error no run starts.

Cost: a tick evaluates each stream's next firing after its cursor; those calls are memoised
(pure functions of hashable values), so a tick with nothing due costs a few dictionary lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from typing import Any

from gim_tasks.lifecycle import StopKind, Verdict
from gim_tasks.schedule.firings import firing_id, restart_id, resume_id
from gim_tasks.schedule.gate import ROWS, Ask, Decision, Outcome, gate, held
from gim_tasks.schedule.jobs import (
    AGGREGATE,
    BY_NAME,
    EXTRACT,
    JOB_NAMES,
    MAINTAIN,
    STREAMED,
    TRANSFORM,
)
from gim_tasks.schedule.localtime import resolve, wall, zone
from gim_tasks.schedule.options import ScheduleOptions
from gim_tasks.schedule.spec import Stream
from gim_tasks.schedule.state import (
    RESTART,
    SCHEDULED,
    ActiveRun,
    SchedulerState,
    WaitingRun,
)

#: A firing handled later than this after its instant counts as missed (scheduler downtime),
#: and S12's catch-up rules decide whether it still runs.
LATE_AFTER = timedelta(minutes=2)


# --- decisions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """Start a new run now."""

    job: str
    firing_id: str
    planned_at: datetime
    trigger: str
    reason: str


@dataclass(frozen=True)
class Hold:
    """Record a new run in state Scheduled, waiting for ``reason`` to clear."""

    job: str
    firing_id: str
    planned_at: datetime
    reason: str


@dataclass(frozen=True)
class Release:
    """A waiting (Scheduled) run may start now."""

    run_id: int
    job: str
    reason: str


@dataclass(frozen=True)
class Stop:
    """Stop a Running run (cooperatively; the runtime forces it after a grace period)."""

    run_id: int
    job: str
    reason: str
    kind: StopKind  # R4: every scheduler stop is a planned one


@dataclass(frozen=True)
class Skip:
    """A firing that starts nothing, recorded (as a Rejected run) so it stays queryable. A
    rule's skip (S1, S2, S6, S9, S12) is expected; a firing ``blocked`` by the configuration
    check (C2) is a failure (R4) and opens an incident."""

    job: str
    firing_id: str
    planned_at: datetime
    reason: str
    blocked: bool = False
    #: S12: the firing fell due while the scheduler was down and no longer runs (the ledger's
    #: verdict ``missed``, O1).
    missed: bool = False
    #: P1-P3: an operator's hold skipped it: the ledger's verdict (paused, operator-skip,
    #: blackout).
    operator: Verdict | None = None


Action = Launch | Hold | Release | Stop | Skip


@dataclass(frozen=True)
class Tick:
    actions: tuple[Action, ...]
    cursors: Mapping[str, datetime]
    next_runs: Mapping[str, datetime | None]
    #: C2: the jobs the configuration check blocks at this tick, with the reason (an open
    #: block incident of a job not listed here is resolved).
    blocked: Mapping[str, str] = field(default_factory=dict)

    def of(self, kind: type) -> list[Action]:
        return [action for action in self.actions if isinstance(action, kind)]


# --- streams -----------------------------------------------------------------------------------


def streams(options: ScheduleOptions) -> dict[str, Stream]:
    """The firing streams of the jobs whose own flag is on, keyed by the job each one launches
    (S9): the catalogue's streamed jobs."""
    return {spec.name: spec.stream(options) for spec in STREAMED if spec.switched_on(options)}


def local_midnight(instant: datetime, tz: tzinfo) -> datetime:
    return resolve(datetime.combine(wall(instant, tz).date(), datetime.min.time()), tz)


def window_end(opened: datetime, options: ScheduleOptions, tz: tzinfo) -> datetime:
    """[decision] A window lasts ``aggregate-duration`` of wall-clock time: opened at 04:00 for
    23:00, it ends at 03:00 local on every day, so the hour left for maintenance stays an hour
    across DST changes (elapsed time would close that gap on the spring-forward day)."""
    return resolve(wall(opened, tz) + options.aggregate_duration, tz)


def open_window(options: ScheduleOptions, now: datetime, tz: tzinfo) -> datetime | None:
    """The opening instant of the aggregation window containing ``now``, if any (S7)."""
    if not options.run_aggregates:
        return None
    # A DST change can make a window up to a few hours longer in elapsed time.
    earliest = now - options.aggregate_duration - timedelta(hours=3)
    opened = options.aggregate_schedule.latest_at_or_before(now, tz, not_before=earliest)
    if opened is not None and now < window_end(opened, options, tz):
        return opened
    return None


def next_runs(options: ScheduleOptions, now: datetime) -> dict[str, datetime | None]:
    """Next Run of every job (A1); None when its launches are off. Transform follows Extract."""
    tz = zone(options.timezone)
    result: dict[str, datetime | None] = dict.fromkeys(JOB_NAMES)
    if not options.run_scheduler:
        return result
    for job, stream in streams(options).items():
        result[job] = stream.next_after(now, tz)
    if options.run_aggregates:
        result[AGGREGATE] = options.aggregate_schedule.next_after(now, tz)
    return result


# --- the tick ----------------------------------------------------------------------------------


#: C2: the configuration check's refusal: one for every job, or per job (an error item may
#: spare the job that repairs it, as a short calendar spares Job_MaintainGIM).
Refusal = str | Callable[[str], str | None] | None


@dataclass
class _Tick:
    """Mutable working state of one :func:`decide` call."""

    options: ScheduleOptions
    now: datetime
    tz: tzinfo
    state: SchedulerState
    refusal: Refusal
    actions: list[Action] = field(default_factory=list)
    cursors: dict[str, datetime] = field(default_factory=dict)

    def add(self, action: Action) -> None:
        self.actions.append(action)
        # Later rules see the effect of earlier decisions in this tick.
        state = self.state
        if isinstance(action, Launch):
            run = ActiveRun(-1, action.job, action.trigger)
            self.state = replace(state, running=(*state.running, run))
        elif isinstance(action, Release):
            waiting = next(w for w in state.waiting if w.run_id == action.run_id)
            self.state = replace(
                state,
                running=(*state.running, ActiveRun(action.run_id, waiting.job, waiting.trigger)),
                waiting=tuple(w for w in state.waiting if w.run_id != action.run_id),
            )
        elif isinstance(action, Hold):
            waiting = WaitingRun(-1, action.job, SCHEDULED, action.planned_at)
            self.state = replace(state, waiting=(*state.waiting, waiting))
        elif isinstance(action, Stop):
            self.state = replace(
                state,
                running=tuple(
                    replace(run, stopping=True) if run.run_id == action.run_id else run
                    for run in state.running
                ),
            )

    def gate(self, job: str, planned: datetime | None = None, **kwargs: Any) -> Decision:
        """The exclusivity gate's answer for ``job`` at this point of the tick; its stops
        are requested at once."""
        when = _clock(planned, self.tz) if planned is not None else ""
        decision = gate(job, Ask.SCHEDULER, self.state, planned=when, tz=self.tz, **kwargs)
        for run, reason, kind in decision.stops:
            self.stop(run, reason, kind)
        return decision

    def stop(self, run: ActiveRun, reason: str, kind: StopKind) -> None:
        if not run.stopping:
            self.add(Stop(run.run_id, run.job, reason, kind))

    def refused(self, job: str) -> str | None:
        """C2: why no new run of ``job`` may start, or None."""
        if self.refusal is None or isinstance(self.refusal, str):
            return self.refusal
        return self.refusal(job)


def _clock(instant: datetime, tz: tzinfo) -> str:
    return wall(instant, tz).strftime("%Y-%m-%d %H:%M")


def decide(
    options: ScheduleOptions, now: datetime, state: SchedulerState, refusal: Refusal = None
) -> Tick:
    """Decisions of one scheduler tick.

    Args:
        options: the ``[schedule]`` options in force at this tick.
        now: the current instant (aware).
        state: runs Running and Scheduled, stream cursors, the newest scheduled ETL cycle.
        refusal: the configuration check's refusal (C2): None when it reports no error, a
            text when it refuses every job, or a function of the job.

    Returns:
        The actions in the order to carry them out, the new cursors, and every job's Next Run.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    tz = zone(options.timezone)
    tick = _Tick(options, now, tz, state, refusal)
    if options.run_scheduler:
        _transform_after_extract(tick)
        _release_waiting(tick)
        for job, stream in streams(options).items():
            _handle_stream(tick, job, stream)
        _aggregation(tick)
    else:
        # S9: no launches. Cursors move on, so switching back on does not replay the pause.
        for job, stream in streams(options).items():
            latest = _due(tick, job, stream)
            if latest is not None:
                tick.cursors[job] = latest
    cursors = {**state.cursors, **tick.cursors}
    blocked = {job: why for job in JOB_NAMES if (why := tick.refused(job)) is not None}
    return Tick(tuple(tick.actions), cursors, next_runs(options, now), blocked)


def _due(tick: _Tick, job: str, stream: Stream) -> datetime | None:
    """The newest firing of ``stream`` not handled yet, if any is due (S12 collapses several)."""
    cursor = tick.state.cursors.get(job)
    if cursor is None:
        # Never ran: behave as after downtime since local midnight (S12).
        cursor = local_midnight(tick.now, tick.tz) - timedelta(microseconds=1)
    return stream.latest_at_or_before(tick.now, tick.tz, not_before=cursor)


def _missed_rule(tick: _Tick, job: str, planned: datetime) -> str | None:
    """S12: why a firing missed during downtime no longer runs, or None if it still does."""
    if tick.now - planned <= LATE_AFTER:
        return None
    options, tz = tick.options, tick.tz
    same_day = wall(planned, tz).date() == wall(tick.now, tz).date()
    if job == EXTRACT:
        inside = options.etl.covers(wall(tick.now, tz).time())
        if inside or tick.now < planned + timedelta(minutes=options.etl.frequency):
            return None
        return "missed while the scheduler was down; now outside the ETL span (S12)"
    if job == MAINTAIN:
        if same_day and not options.etl.covers(wall(tick.now, tz).time()):
            return None
        return "missed while the scheduler was down; no longer allowed today (S12)"
    if same_day:
        return None
    return "missed while the scheduler was down on an earlier day (S12)"


def _handle_stream(tick: _Tick, job: str, stream: Stream) -> None:
    planned = _due(tick, job, stream)
    if planned is None:
        return
    tick.cursors[job] = planned
    fid = firing_id(job, planned)
    # P1-P3 first: an operator's hold explains the firing better than a miss or a block.
    if (hold := held(job, tick.state.holds, (fid, planned), tick.tz)) is not None:
        tick.add(Skip(job, fid, planned, hold[1], operator=hold[0]))
        return
    late = _missed_rule(tick, job, planned)
    if late is not None:
        tick.add(Skip(job, fid, planned, late, missed=True))
        return
    if (refused := tick.refused(job)) is not None:
        tick.add(Skip(job, fid, planned, refused, blocked=True))
        return
    decision = tick.gate(job, planned, firing=(fid, planned))
    if decision.outcome is Outcome.SKIP:
        tick.add(Skip(job, fid, planned, decision.reason or ""))
    elif decision.outcome is Outcome.WAIT:
        tick.add(Hold(job, fid, planned, decision.reason or ""))
    else:
        tick.add(Launch(job, fid, planned, SCHEDULED, BY_NAME[job].launched))


def _transform_after_extract(tick: _Tick) -> None:
    """S3: in a scheduled cycle, Transform starts when Extract completes."""
    state = tick.state
    cycle = state.last_cycle
    if (
        not state.transform_owed
        or cycle is None
        or tick.refused(TRANSFORM) is not None
        or not tick.gate(TRANSFORM).go  # S2; S13: waits for manual maintenance, stays owed
    ):
        return
    tick.add(
        Launch(
            TRANSFORM,
            firing_id(TRANSFORM, cycle.planned_at),
            cycle.planned_at,
            SCHEDULED,
            f"Extract of the cycle planned at {_clock(cycle.planned_at, tick.tz)} completed (S3)",
        )
    )


def _release_waiting(tick: _Tick) -> None:
    """Start waiting (Scheduled) runs whose rule cleared, oldest first; ETL before maintenance
    (S5 gives a due cycle priority)."""
    ordered = sorted(tick.state.waiting, key=lambda w: (w.job != EXTRACT, w.run_id))
    for waiting in ordered:
        if tick.refused(waiting.job) is not None:
            continue  # C2: no run starts; it keeps waiting
        reason = _release_reason(tick, waiting)
        if reason is not None:
            tick.add(Release(waiting.run_id, waiting.job, reason))


def _release_reason(tick: _Tick, waiting: WaitingRun) -> str | None:
    """The gate's answer for a waiting run: the release reason, or None (it keeps waiting)."""
    ask = Ask.SCHEDULER if waiting.by_scheduler else Ask.MANUAL
    decision = gate(waiting.job, ask, tick.state, waiting=waiting.run_id, tz=tick.tz)
    return decision.reason if decision.go else None


#: The gate's rows that keep an aggregation window from running: maintenance runs or waits.
_MAINTENANCE_ROWS = ("S7-maintenance", "S7-maintenance-waiting")


def _aggregation(tick: _Tick) -> None:
    """S7: keep aggregation running inside its windows, paused for maintenance, stopped after."""
    options, state = tick.options, tick.state
    if not options.run_aggregates:
        _resume_manual_aggregation(tick)
        return
    opened = open_window(options, tick.now, tick.tz)
    running = state.running_job(AGGREGATE)
    if opened is None:
        if running is not None:
            tick.stop(running, "aggregation window ended (S7)", StopKind.WINDOW_END)
        return
    first = tick.state.cursors.get(AGGREGATE) != opened
    fid, at = (
        (firing_id(AGGREGATE, opened), opened)
        if first
        else (restart_id(opened, tick.now), tick.now)
    )
    decision = tick.gate(AGGREGATE, firing=(fid, at))
    if decision.row in _MAINTENANCE_ROWS:
        if running is not None:
            tick.stop(running, ROWS["S7-pause"].words, StopKind.MAINTENANCE)
        return
    if not decision.go or tick.refused(AGGREGATE) is not None:
        return  # P1-P3 included: the ledger judges the window's opening (settle_windows)
    tick.cursors[AGGREGATE] = opened
    if first:
        tick.add(
            Launch(
                AGGREGATE,
                fid,
                opened,
                SCHEDULED,
                f"aggregation window opened at {_clock(opened, tick.tz)} (S7)",
            )
        )
    else:
        tick.add(
            Launch(
                AGGREGATE,
                fid,
                opened,
                RESTART,
                "aggregation not running inside its window: restarted (S7)",
            )
        )


def _resume_manual_aggregation(tick: _Tick) -> None:
    """M3: with ``run-aggregates=false`` a manual aggregation runs until someone stops it; when
    the scheduler paused it for maintenance (S7), it resumes once maintenance is over. The
    firing id names the paused run, so it resumes once (S11)."""
    paused = tick.state.paused_aggregation
    if paused is None or tick.refused(AGGREGATE) is not None or not tick.gate(AGGREGATE).go:
        return
    tick.add(
        Launch(
            AGGREGATE,
            resume_id(paused),
            tick.now,
            RESTART,
            f"resumes aggregation run {paused}, paused for maintenance (M3)",
        )
    )
