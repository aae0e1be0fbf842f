"""The firing engine: options + an aware "now" + a snapshot of run state -> decisions.

Pure: no I/O, no clock. The beat calls :func:`decide` on every tick and carries the decisions
out (launch, hold as Scheduled, release, stop, record a skipped firing), then persists the new
cursors. Every decision carries the reason an operator will read in the run history.

Rules implemented (SPEC §4): S1 ETL grid and at most one pending cycle; S2 one run per job;
S3 Transform after Extract; S4 maintenance waits for ETL and excludes other launches; S5 a due
ETL cycle preempts scheduler-started maintenance; S6 UpdateStats skipped during scheduled
maintenance; S7 aggregation windows with restart, pause for maintenance, stop at window end;
S8 export waits for maintenance; S9 run flags; S10 via the streams' local-time resolution;
S11 firing ids; S12 catch-up after downtime; S13 scheduled launches wait for manual
maintenance. C2: while the configuration check reports an error no run starts.

Cost: a tick evaluates each stream's next firing after its cursor; those calls are memoised
(pure functions of hashable values), so a tick with nothing due costs a few dictionary lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from typing import Protocol

from gim_tasks.lifecycle import COMPLETED_STATES, StopKind, Trigger
from gim_tasks.schedule.cron import parse_cron
from gim_tasks.schedule.firings import firing_id, restart_id, resume_id
from gim_tasks.schedule.jobs import (
    AGGREGATE,
    EXPORT,
    EXTRACT,
    JOB_NAMES,
    MAINTAIN,
    TRANSFORM,
    UPDATE_STATS,
)
from gim_tasks.schedule.localtime import resolve, wall, zone
from gim_tasks.schedule.options import ScheduleOptions

COMPLETED = COMPLETED_STATES
#: A firing handled later than this after its instant counts as missed (scheduler downtime),
#: and S12's catch-up rules decide whether it still runs.
LATE_AFTER = timedelta(minutes=2)

SCHEDULED = Trigger.SCHEDULED
RESTART = Trigger.RESTART
#: In the firing id of a manual aggregation's resumption after maintenance (M3).


class Stream(Protocol):
    def next_after(self, instant: datetime, tz: tzinfo) -> datetime | None: ...

    def latest_at_or_before(
        self, instant: datetime, tz: tzinfo, not_before: datetime
    ) -> datetime | None: ...


# --- state snapshot ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveRun:
    """A run in state Running."""

    run_id: int
    job: str
    trigger: str  # scheduled | restart | manual | forced
    stopping: bool = False  # a stop was already requested

    @property
    def by_scheduler(self) -> bool:
        return self.trigger in (SCHEDULED, RESTART)


@dataclass(frozen=True)
class WaitingRun:
    """A run in state Scheduled: waiting for an exclusivity rule, oldest first."""

    run_id: int
    job: str
    trigger: str
    planned_at: datetime | None = None

    @property
    def by_scheduler(self) -> bool:
        return self.trigger in (SCHEDULED, RESTART)


@dataclass(frozen=True)
class CycleView:
    """The newest scheduled ETL cycle: its planned slot and the states of its two runs."""

    planned_at: datetime
    extract_state: str | None  # None: not started yet
    transform_state: str | None


@dataclass(frozen=True)
class SchedulerState:
    running: tuple[ActiveRun, ...] = ()
    waiting: tuple[WaitingRun, ...] = ()
    #: Per stream, the instant of the last firing handled (launched, held or skipped).
    cursors: Mapping[str, datetime] = field(default_factory=dict)
    last_cycle: CycleView | None = None
    #: M3: the newest started aggregation run, when it was Stopped to pause for maintenance.
    paused_aggregation: int | None = None

    def running_job(self, job: str) -> ActiveRun | None:
        return next((run for run in self.running if run.job == job), None)

    def waiting_job(self, job: str) -> WaitingRun | None:
        return next((run for run in self.waiting if run.job == job), None)

    @property
    def transform_owed(self) -> bool:
        """S3: the newest scheduled cycle's Extract completed and its Transform has not run."""
        cycle = self.last_cycle
        return bool(cycle and cycle.extract_state in COMPLETED and cycle.transform_state is None)

    @property
    def etl_busy(self) -> bool:
        """An ETL cycle (or a manual Extract/Transform) is in progress."""
        return (
            self.running_job(EXTRACT) is not None
            or self.running_job(TRANSFORM) is not None
            or self.transform_owed
        )


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
    """The enabled firing streams, keyed by the job each one launches (S9)."""
    result: dict[str, Stream] = {EXTRACT: options.etl}
    if options.run_maintain:
        start = options.maintain_start
        result[MAINTAIN] = parse_cron(f"{start.minute} {start.hour}")
    if options.run_update_stats:
        result[UPDATE_STATS] = options.update_stats_schedule
    if options.run_export:
        result[EXPORT] = options.export_schedule
    return result


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
    result: dict[str, datetime | None] = dict.fromkeys(
        (EXTRACT, TRANSFORM, AGGREGATE, MAINTAIN, UPDATE_STATS, EXPORT)
    )
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

    @property
    def maintenance(self) -> ActiveRun | None:
        return self.state.running_job(MAINTAIN)

    def stop(self, run: ActiveRun, reason: str, kind: StopKind) -> None:
        if not run.stopping:
            self.add(Stop(run.run_id, run.job, reason, kind))

    def refused(self, job: str) -> str | None:
        """C2: why no new run of ``job`` may start, or None."""
        if self.refusal is None or isinstance(self.refusal, str):
            return self.refusal
        return self.refusal(job)

    def maintenance_blockers(self, manual: bool) -> list[str]:
        """What a waiting or due maintenance run waits for (S4, M5): every other running job,
        except UpdateStats for scheduler-started maintenance (S6), and an owed Transform."""
        blockers = [
            f"{run.job} run {run.run_id}" if run.run_id > 0 else run.job
            for run in self.state.running
            if run.job != MAINTAIN and (manual or run.job != UPDATE_STATS)
        ]
        cycle = self.state.last_cycle
        if (
            cycle is not None
            and self.state.transform_owed
            and not self.state.running_job(TRANSFORM)
        ):
            blockers.append(
                f"{TRANSFORM} of the cycle planned at {_clock(cycle.planned_at, self.tz)}"
            )
        return blockers


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
    late = _missed_rule(tick, job, planned)
    if late is not None:
        tick.add(Skip(job, fid, planned, late, missed=True))
        return
    if (refused := tick.refused(job)) is not None:
        tick.add(Skip(job, fid, planned, refused, blocked=True))
        return
    {
        EXTRACT: _fire_etl,
        MAINTAIN: _fire_maintain,
        UPDATE_STATS: _fire_update_stats,
        EXPORT: _fire_export,
    }[job](tick, fid, planned)


def _fire_etl(tick: _Tick, fid: str, planned: datetime) -> None:
    state, maintenance = tick.state, tick.maintenance
    pending = state.waiting_job(EXTRACT)
    if pending is not None:
        tick.add(
            Skip(
                EXTRACT,
                fid,
                planned,
                f"a cycle is already pending as run "
                f"{pending.run_id} (S1: at most one pending cycle)",
            )
        )
        return
    if maintenance is not None and not maintenance.by_scheduler:
        tick.add(
            Hold(
                EXTRACT,
                fid,
                planned,
                f"waiting for manual maintenance run {maintenance.run_id} (S13)",
            )
        )
        return
    if maintenance is not None:
        tick.stop(
            maintenance,
            # Maintenance (its purge above all) has no end of its own: an ETL cycle ends it,
            # and the steps it did not reach run at the next maintenance (S5).
            f"preempted by the ETL cycle planned at {_clock(planned, tick.tz)} (S5); "
            "the steps left resume at the next maintenance",
            StopKind.PREEMPTED,
        )
        tick.add(
            Hold(
                EXTRACT,
                fid,
                planned,
                f"waiting for maintenance run {maintenance.run_id} to stop (S5)",
            )
        )
        return
    if state.etl_busy:
        tick.add(Hold(EXTRACT, fid, planned, "previous ETL cycle still running (S1)"))
        return
    tick.add(Launch(EXTRACT, fid, planned, SCHEDULED, "ETL cycle (S1)"))


def _fire_maintain(tick: _Tick, fid: str, planned: datetime) -> None:
    running, waiting = tick.maintenance, tick.state.waiting_job(MAINTAIN)
    if running is not None:
        tick.add(Skip(MAINTAIN, fid, planned, f"already running as run {running.run_id} (S2)"))
        return
    if waiting is not None:
        tick.add(Skip(MAINTAIN, fid, planned, f"already waiting as run {waiting.run_id} (S2)"))
        return
    aggregation = tick.state.running_job(AGGREGATE)
    if aggregation is not None:
        tick.stop(
            aggregation, "paused for maintenance; resumes after it (S7)", StopKind.MAINTENANCE
        )
    blockers = tick.maintenance_blockers(manual=False)
    if blockers:
        tick.add(Hold(MAINTAIN, fid, planned, f"waiting for {', '.join(blockers)} (S4)"))
        return
    tick.add(Launch(MAINTAIN, fid, planned, SCHEDULED, "daily maintenance (S4)"))


def _fire_update_stats(tick: _Tick, fid: str, planned: datetime) -> None:
    maintenance = tick.maintenance
    if maintenance is not None and maintenance.by_scheduler:
        tick.add(
            Skip(
                UPDATE_STATS,
                fid,
                planned,
                f"scheduled maintenance run {maintenance.run_id} is running (S6)",
            )
        )
        return
    if (running := tick.state.running_job(UPDATE_STATS)) is not None:
        tick.add(Skip(UPDATE_STATS, fid, planned, f"already running as run {running.run_id} (S2)"))
        return
    if (waiting := tick.state.waiting_job(UPDATE_STATS)) is not None:
        tick.add(Skip(UPDATE_STATS, fid, planned, f"already waiting as run {waiting.run_id}"))
        return
    if maintenance is not None:
        tick.add(
            Hold(
                UPDATE_STATS,
                fid,
                planned,
                f"waiting for manual maintenance run {maintenance.run_id} (S13)",
            )
        )
        return
    tick.add(Launch(UPDATE_STATS, fid, planned, SCHEDULED, "statistics schedule (S6)"))


def _fire_export(tick: _Tick, fid: str, planned: datetime) -> None:
    if (running := tick.state.running_job(EXPORT)) is not None:
        tick.add(Skip(EXPORT, fid, planned, f"already running as run {running.run_id} (S2)"))
        return
    if (waiting := tick.state.waiting_job(EXPORT)) is not None:
        tick.add(Skip(EXPORT, fid, planned, f"already waiting as run {waiting.run_id}"))
        return
    reason = _maintenance_gate(tick)
    if reason is not None:
        tick.add(Hold(EXPORT, fid, planned, reason))
        return
    tick.add(Launch(EXPORT, fid, planned, SCHEDULED, "export schedule (S8)"))


def _maintenance_gate(tick: _Tick) -> str | None:
    """Why a job other than ETL and UpdateStats may not start now because of maintenance,
    with the rule: scheduled maintenance runs (S8) or manual maintenance runs (S13), or
    maintenance waits to run (writer preference, so it is not starved)."""
    if (maintenance := tick.maintenance) is not None:
        if not maintenance.by_scheduler:
            return f"waiting for manual maintenance run {maintenance.run_id} (S13)"
        return f"waiting for maintenance run {maintenance.run_id} (S8)"
    if (waiting := tick.state.waiting_job(MAINTAIN)) is not None:
        return f"maintenance run {waiting.run_id} is waiting to start (S8)"
    return None


def _transform_after_extract(tick: _Tick) -> None:
    """S3: in a scheduled cycle, Transform starts when Extract completes."""
    state = tick.state
    cycle = state.last_cycle
    if (
        not state.transform_owed
        or cycle is None
        or tick.refused(TRANSFORM) is not None
        or state.running_job(TRANSFORM) is not None
    ):
        return
    maintenance = tick.maintenance
    if maintenance is not None and not maintenance.by_scheduler:
        return  # S13: waits for manual maintenance; stays owed
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
    state, job = tick.state, waiting.job
    if state.running_job(job) is not None:
        return None  # S2
    maintenance = tick.maintenance
    if job == MAINTAIN:
        manual = not waiting.by_scheduler
        if tick.maintenance_blockers(manual) or state.waiting_job(EXTRACT) is not None:
            return None
        aggregation = state.running_job(AGGREGATE)
        if aggregation is not None:  # pragma: no cover - counted as a blocker above
            return None
        return "no other run active (S4)" if not manual else "no other run active (M5)"
    if job == EXTRACT and waiting.by_scheduler:
        if maintenance is not None or state.etl_busy:
            return None
        return "previous cycle and maintenance ended (S1, S5)"
    if job == UPDATE_STATS:
        if maintenance is not None:
            return None
        return "maintenance ended (S13)"
    if _maintenance_gate(tick) is not None:
        return None
    return "maintenance ended (S4, S13)"


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
    paused_for = tick.maintenance or state.waiting_job(MAINTAIN)
    if paused_for is not None:
        if running is not None:
            tick.stop(
                running, "paused for maintenance; resumes after it (S7)", StopKind.MAINTENANCE
            )
        return
    if (
        running is not None
        or state.waiting_job(AGGREGATE) is not None
        or tick.refused(AGGREGATE) is not None
    ):
        return
    first = tick.state.cursors.get(AGGREGATE) != opened
    tick.cursors[AGGREGATE] = opened
    if first:
        tick.add(
            Launch(
                AGGREGATE,
                firing_id(AGGREGATE, opened),
                opened,
                SCHEDULED,
                f"aggregation window opened at {_clock(opened, tick.tz)} (S7)",
            )
        )
    else:
        tick.add(
            Launch(
                AGGREGATE,
                restart_id(opened, tick.now),
                opened,
                RESTART,
                "aggregation not running inside its window: restarted (S7)",
            )
        )


def _resume_manual_aggregation(tick: _Tick) -> None:
    """M3: with ``run-aggregates=false`` a manual aggregation runs until someone stops it; when
    the scheduler paused it for maintenance (S7), it resumes once maintenance is over. The
    firing id names the paused run, so it resumes once (S11)."""
    state, paused = tick.state, tick.state.paused_aggregation
    if (
        paused is None
        or tick.maintenance is not None
        or state.waiting_job(MAINTAIN) is not None
        or state.running_job(AGGREGATE) is not None
        or state.waiting_job(AGGREGATE) is not None
        or tick.refused(AGGREGATE) is not None
    ):
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
