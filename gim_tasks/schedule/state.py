"""The scheduler's snapshot of run state: what is Running, what waits as Scheduled, the newest
scheduled ETL cycle. The input of every pure decision (the firing engine, admission, the
exclusivity gate); ``gim_tasks.runtime.state.load_state`` reads it from ``job_run``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from gim_tasks.lifecycle import COMPLETED_STATES, Trigger
from gim_tasks.schedule.holds import Holds
from gim_tasks.schedule.jobs import EXTRACT, TRANSFORM

SCHEDULED = Trigger.SCHEDULED
RESTART = Trigger.RESTART


@dataclass(frozen=True)
class _Run:
    run_id: int
    job: str
    trigger: str  # scheduled | restart | manual | forced

    @property
    def by_scheduler(self) -> bool:
        return self.trigger in (SCHEDULED, RESTART)


@dataclass(frozen=True)
class ActiveRun(_Run):
    """A run in state Running (or Scheduled and already sent to a worker)."""

    stopping: bool = False  # a stop was already requested
    firing_id: str | None = None  # B1: a back-fill item's names its step and day


@dataclass(frozen=True)
class WaitingRun(_Run):
    """A run in state Scheduled: waiting for an exclusivity rule, oldest first."""

    planned_at: datetime | None = None


@dataclass(frozen=True)
class CycleView:
    """The newest scheduled ETL cycle: its planned slot and the states of its two runs."""

    planned_at: datetime
    extract_state: str | None  # None: not started yet
    transform_state: str | None


@dataclass(frozen=True)
class PoolHolder:
    run_id: int
    job: str
    weight: int


@dataclass(frozen=True)
class Pools:
    """B2: the database pool's size, each member job's weight, and the runs holding slots
    (``pool_slot`` rows, taken when a run is admitted and gone when it ends)."""

    name: str = "heavy-db"
    capacity: int = 0  # 0: no pool (every job fits)
    weights: Mapping[str, int] = field(default_factory=dict)
    holders: tuple[PoolHolder, ...] = ()

    @property
    def held(self) -> int:
        return sum(holder.weight for holder in self.holders)


@dataclass(frozen=True)
class SchedulerState:
    running: tuple[ActiveRun, ...] = ()
    waiting: tuple[WaitingRun, ...] = ()
    #: Per stream, the instant of the last firing handled (launched, held or skipped).
    cursors: Mapping[str, datetime] = field(default_factory=dict)
    last_cycle: CycleView | None = None
    #: M3: the newest started aggregation run, when it was Stopped to pause for maintenance.
    paused_aggregation: int | None = None
    #: P1-P3: operators' pauses, skipped firings and blackout windows.
    holds: Holds = field(default_factory=Holds)
    #: B2: the database pool.
    pools: Pools = field(default_factory=Pools)

    def running_job(self, job: str) -> ActiveRun | None:
        return next((run for run in self.running if run.job == job), None)

    def waiting_job(self, job: str) -> WaitingRun | None:
        return next((run for run in self.waiting if run.job == job), None)

    @property
    def transform_owed(self) -> bool:
        """S3: the newest scheduled cycle's Extract completed and its Transform has not run."""
        cycle = self.last_cycle
        return bool(
            cycle and cycle.extract_state in COMPLETED_STATES and cycle.transform_state is None
        )

    @property
    def etl_busy(self) -> bool:
        """An ETL cycle (or a manual Extract/Transform) is in progress."""
        return (
            self.running_job(EXTRACT) is not None
            or self.running_job(TRANSFORM) is not None
            or self.transform_owed
        )
