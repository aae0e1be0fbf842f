"""Words of a run's life that every layer shares (SPEC R1, R4): pure data, no imports.

``StopKind`` is why a Stopped run stopped. The planned kinds are stops the scheduler makes as
the rules require (R4 counts them as success); ``operator`` is neither success nor failure;
``shutdown`` and ``terminated`` are stops nobody planned (failures).
"""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    """Run states of SPEC R1. The only place their names are written: code says
    ``RunState.RUNNING`` (a StrEnum: it is the text "Running" in SQL, JSON and templates), and a
    unit test refuses a state literal anywhere else in gim_tasks (the schema and its migrations,
    which are frozen text, and type-level ``Literal[...]`` declarations excepted)."""

    SCHEDULED = "Scheduled"
    RUNNING = "Running"
    COMPLETED = "Completed"
    COMPLETED_WITH_WARNINGS = "Completed with warnings"
    FAILED = "Failed"
    STOPPED = "Stopped"
    CANCELLED = "Cancelled"
    REJECTED = "Rejected"


#: Run states of SPEC R1 in order (the ``job_run.state`` constraint is built from this).
RUN_STATES = tuple(state.value for state in RunState)
#: Every state but Scheduled and Running (R1): a run in one of them has ended.
FINAL_STATES = RUN_STATES[2:]
#: States of a run that ended well (R4 successes besides planned stops).
COMPLETED_STATES = (RunState.COMPLETED, RunState.COMPLETED_WITH_WARNINGS)


class Trigger(StrEnum):
    """What started a run (SPEC M8): the scheduler's firing, a person, a forced start (M7), or
    the scheduler restarting aggregation inside its window or after maintenance (S7, M3)."""

    SCHEDULED = "scheduled"
    MANUAL = "manual"
    FORCED = "forced"
    RESTART = "restart"
    RETRY = "retry"  # L3: attempt k of a firing whose attempt k-1 failed transiently
    BACKFILL = "backfill"  # B1: one item (day x step) of a back-fill, started by the beat


TRIGGERS = tuple(trigger.value for trigger in Trigger)

#: Roles of SPEC A5, weakest first: each role may do what the ones before it may.
ROLES = ("viewer", "operator", "admin")


class StopKind(StrEnum):
    WINDOW_END = "window-end"  # S7: the aggregation window ended
    MAINTENANCE = "maintenance"  # S7: aggregation paused for scheduled maintenance
    PREEMPTED = "preempted"  # S5: a due ETL cycle preempted scheduled maintenance
    OPERATOR = "operator"  # M6: `gim stop`, the web's Stop, Ctrl-C on an in-process run
    SHUTDOWN = "shutdown"  # the process running it was told to end (SIGTERM, warm shutdown)
    TERMINATED = "terminated"  # M6: no cooperative stop within the grace: revoked, terminate
    TIME_LIMIT = "time-limit"  # L1: past its job's [limits] max-runtime (stop): a failure


STOP_KINDS = tuple(kind.value for kind in StopKind)
PLANNED_STOPS = (StopKind.WINDOW_END, StopKind.MAINTENANCE, StopKind.PREEMPTED)


class SkipKind(StrEnum):
    """Why the scheduler recorded a firing that starts nothing (a Rejected run, R4)."""

    RULE = "rule"  # a rule requires the skip (S1, S2, S6, S9, S12): not in History, no failure
    BLOCKED = "blocked"  # the configuration check blocks every start (C2): a failure


SKIP_KINDS = tuple(kind.value for kind in SkipKind)

#: R4 outcomes of an ended run: success, failure, or an operator's stop (neither).
SUCCESS, FAILURE, OPERATOR_STOP = "success", "failure", "operator"


def outcome(state: str, stop_kind: str | None, skip: str | None = None) -> str | None:
    """R4: what an ended run means. Completed (with or without warnings) and a planned stop
    are successes; Failed, a stop nobody planned and a scheduled firing blocked by the
    configuration check (C2) are failures; an operator's stop is neither. None for a run that
    has not ended, or never ran (Cancelled, Rejected by a rule or on request)."""
    if state == "Rejected" and skip == SkipKind.BLOCKED:
        return FAILURE
    if state in ("Completed", "Completed with warnings"):
        return SUCCESS
    if state == "Failed":
        return FAILURE
    if state == "Stopped":
        if stop_kind in PLANNED_STOPS:
            return SUCCESS
        return OPERATOR_STOP if stop_kind == StopKind.OPERATOR else FAILURE
    return None


class Verdict(StrEnum):
    """What became of a planned firing (SPEC O1): one per firing in the ledger."""

    ON_TIME = "on-time"  # started within the grace
    LATE = "late"  # started after the grace (lag recorded)
    HELD = "held"  # recorded as Scheduled, waiting for a rule (S4, S8, S13)
    SKIPPED = "skipped"  # a rule or flag starts nothing (S1, S2, S6, S9, S12)
    BLOCKED = "blocked"  # the configuration check blocks it (C2)
    MISSED = "missed"  # no decision by planned + grace: the scheduler was down
    PAUSED = "paused"  # the job (or every job) was paused by an operator (P1)
    OPERATOR_SKIP = "operator-skip"  # an operator skipped this one firing (P2)
    BLACKOUT = "blackout"  # inside a blackout window naming the job (P3)
    CANCELLED = "cancelled"  # a run planned at a set time, cancelled before it (P4)


VERDICTS = tuple(verdict.value for verdict in Verdict)


class Condition(StrEnum):
    """What an incident is about (SPEC O3): opened once, resolved once, per job."""

    BLOCKED = "blocked"
    FAILURE = "failure"
    MISSED = "missed"
    LATE = "late"
    STALE_DATA = "stale-data"
    SCHEDULER_DOWN = "scheduler-down"
    PAUSED = "paused"  # P1, P5: the job is paused (opened by a pause, resolved by its end)
    TIME_LIMIT = "time-limit"  # L1: a run past its job's max-runtime (warn); resolved at its end
    SLOW = "slow"  # L2: a run past slow-factor x p95 of its job's successes
    COLLISION_AHEAD = "collision-ahead"  # L2: a run predicted to run into a slot
    DEADLINE = "deadline"  # Q1: a data day not complete by its ready-by
    DEADLINE_AT_RISK = "deadline-at-risk"  # Q1: the work left will not fit before ready-by
    INCOMPLETE_DAY = "incomplete-day"  # Q2: a day not complete behind a newer complete one
    CHECK_FAILED = "check-failed"  # Q3: an error quality check fails on a data day


CONDITIONS = tuple(condition.value for condition in Condition)


class Via(StrEnum):
    """The ways to start a run by hand; each one is enumerated by the tests (M0). (Here, not in
    the admission module, so the command line names them without importing the decision.)"""

    CLI = "gim run"
    LOCAL = "gim run --local"
    AGGREGATE_ONCE = "gim aggregate once"
    API = "api"
    CELERY_CALL = "celery call"
    AT = "gim run --at"  # planned at a set time (P4), admitted by the beat at its instant

    @property
    def in_process(self) -> bool:
        """The run executes in the requesting process (never sent to a worker)."""
        return self in (Via.LOCAL, Via.AGGREGATE_ONCE)


class Retry(StrEnum):
    """L3: where a failed attempt stands. ``pending``: it failed transiently and the job has
    attempts left: its letters and its failure incident wait for the beat's decision;
    ``retried``: attempt k+1 exists; ``final``: no retry will be made (its reason says why)."""

    PENDING = "pending"
    RETRIED = "retried"
    FINAL = "final"


RETRY_STATES = tuple(r.value for r in Retry)


class Channel(StrEnum):
    """Where an audited action came from (SPEC P6)."""

    WEB = "web"  # a page's form
    API = "api"  # /api/*, with a token or a session
    CLI = "cli"  # gim …, or any process that named no other channel
    CELERY = "celery"  # a raw task message (celery call, Flower)
    BEAT = "beat"  # the scheduler's own decisions (a pause ending, P5's automatic pause)


AUDIT_CHANNELS = tuple(channel.value for channel in Channel)
