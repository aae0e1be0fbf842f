"""Admission of a manual run (SPEC M0): options + an aware "now" + the run state + a request
-> Running, Scheduled (with the reason) or Rejected (with the reason).

Pure, like :func:`gim_tasks.schedule.engine.decide`, and the one place the manager's rules
live: M3, M4, M5, M7, S2, S13 and C2. Every way of starting a run by hand (``gim run``, ``gim
run --local``, ``gim aggregate once``, the API, ``celery call``) calls :func:`admit` through
``gim_tasks.runtime.manager``, which holds the admission lock (the advisory lock the beat's
decisions take too) around reading the state, deciding and recording, so a manual start and a
scheduled launch never both see a job free.

Malformed requests (unknown job, parameters for a job that takes none, a bad ``-insertPendingAgg``
token) are ``invalid``: refused at once, nothing recorded, and the command line exits 2. A
request refused by a rule is recorded as a Rejected run (M1, M8).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from gim_tasks.lifecycle import RunState, Via
from gim_tasks.schedule.engine import open_window
from gim_tasks.schedule.gate import Ask, Outcome, gate
from gim_tasks.schedule.jobs import AGGREGATE, BY_NAME, JOB_NAMES, JOBS
from gim_tasks.schedule.localtime import wall, zone
from gim_tasks.schedule.options import ScheduleOptions
from gim_tasks.schedule.state import SchedulerState

if TYPE_CHECKING:
    from gim_tasks.aggregate.params import Reaggregation
    from gim_tasks.aggregate.safety import Holdings

#: The [schedule] option that schedules each job that is not run manually (M7).
SCHEDULED_BY = {info.name: info.scheduled_by[-1] for info in JOBS if not info.manual}


@dataclass(frozen=True)
class RunRequest:
    job: str
    actor: str
    via: Via
    params: str = ""  # Job_AggregateGIM only (M4)
    force: bool = False  # M7: an admin's forced run
    #: L3: the beat retries a transient failure: a scheduled job's own attempt (M7 does not
    #: apply), held like its firings by a pause (P1).
    retry: bool = False

    @property
    def trigger(self) -> str:
        return "retry" if self.retry else "forced" if self.force else "manual"


Verdict = Literal[RunState.RUNNING, RunState.SCHEDULED, RunState.REJECTED]


@dataclass(frozen=True)
class Admission:
    verdict: Verdict
    reason: str | None = None
    #: Bad input rather than a rule: refused, not recorded (the CLI exits 2).
    invalid: bool = False
    #: M4: the parsed re-aggregation request to queue (also when aggregation is refused now:
    #: the next aggregation run processes it).
    reaggregation: Reaggregation | None = None
    #: M4: the running aggregation run that takes the request (no new run).
    joins: int | None = None


def _reject(reason: str, invalid: bool = False, request: Reaggregation | None = None) -> Admission:
    return Admission(RunState.REJECTED, reason, invalid=invalid, reaggregation=request)


def admit(
    options: ScheduleOptions,
    now: datetime,
    state: SchedulerState,
    request: RunRequest,
    refusal: Callable[[str], str | None] = lambda job: None,
    holdings: Holdings | None = None,
) -> Admission:
    """Decide a manual run request.

    Args:
        options: the ``[schedule]`` options in force.
        now: the current instant (aware); M3 asks whether an aggregation window is open.
        state: Running runs (with Scheduled ones already sent to a worker) and waiting ones.
        request: what is asked, by whom, through which path.
        refusal: C2: why the configuration check refuses a new run of a job, or None.
        holdings: D5: what the mart still holds; required when the request re-aggregates.

    Returns:
        The verdict with the reason the operator reads, ending with its rule id.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    job = request.job
    if job not in JOB_NAMES:
        return _reject(f"unknown job '{job}'; jobs are {', '.join(JOB_NAMES)}", invalid=True)
    reaggregation, tz = None, zone(options.timezone)
    if request.params.strip():
        # The hierarchy registry comes with SQLAlchemy: loaded only when parameters are given
        # (the command line imports this module for Via, and must start fast).
        from gim_tasks.aggregate.params import ParamError
        from gim_tasks.aggregate.params import parse as parse_params

        if job != AGGREGATE:
            return _reject(f"only {AGGREGATE} takes parameters; {job} takes none (M4)", True)
        try:
            reaggregation = parse_params(request.params)
        except ParamError as error:
            return _reject(str(error), invalid=True)  # names the bad token (M4)
        if holdings is None:
            raise ValueError("a re-aggregation is admitted against the mart's holdings (D5)")
        from gim_tasks.aggregate.safety import refusal as destroys

        # D5 before anything else, --force included: nothing overrides it.
        if (why := destroys(reaggregation, holdings, tz, wall(now, tz).date())) is not None:
            return _reject(why)
    info = BY_NAME[job]
    if info.fires == "backfill":  # its runs are the items of a back-fill: no run by hand
        return _reject(
            f"{job} runs only the items of a back-fill (B1): create one with `gim backfill "
            "create --from DAY --to DAY --steps aggregate,export --reason TEXT`",
            invalid=True,
        )
    if not info.manual and not request.force and not request.retry:
        return _reject(
            f"{job} is not run manually: it runs on [schedule] {SCHEDULED_BY[job]} when "
            f"{info.enabled_by}=true; an admin may force a run with --force (M7)"
        )
    if (refused := refusal(job)) is not None:
        return _reject(f"{refused} (C2)")
    decision = gate(job, Ask.MANUAL, state, tz=tz)  # S2, S13, M5: the exclusivity gate
    running = state.running_job(job)
    if job == AGGREGATE and running is not None and reaggregation is not None:
        return Admission(
            RunState.RUNNING,
            f"re-aggregation queued; the running aggregation (run {running.run_id}) processes "
            "it (M4)",
            reaggregation=reaggregation,
            joins=running.run_id,
        )
    if decision.outcome is Outcome.SKIP:
        return _reject(decision.reason or "")
    if job == AGGREGATE and options.run_aggregates:
        if open_window(options, now, tz) is None:
            queued = (
                "; the re-aggregation request stays queued for the next window"
                if reaggregation is not None
                else ""
            )
            return _reject(
                "run-aggregates=true and no aggregation window is open: aggregation runs "
                f"only inside its windows (M3){queued}",
                request=reaggregation,
            )
    if decision.outcome is Outcome.WAIT:
        return Admission(RunState.SCHEDULED, decision.reason, reaggregation=reaggregation)
    if reaggregation is not None:
        return Admission(
            RunState.RUNNING,
            "aggregation was not running: started, and the request is queued (M4)",
            reaggregation=reaggregation,
        )
    if (pause := state.holds.pause_of(job)) is not None:
        if request.retry:  # a retry is the scheduler's, like the firing it repeats (P1)
            return _reject(f"no retry: {job} is {pause.words} (P1)")
        # P1: manual starts stay allowed; the answer says the job is paused.
        return Admission(
            RunState.RUNNING,
            f"started; note: {job} is {pause.words} (P1: manual starts stay "
            "allowed, its scheduled firings do not start)",
        )
    return Admission(RunState.RUNNING)
