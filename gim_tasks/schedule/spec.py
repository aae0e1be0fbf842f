"""What a job is to the scheduler: one :class:`JobSpec` per job, the row of the job catalogue
(:mod:`gim_tasks.schedule.jobs`). The firing engine, the plan and its words, the exclusivity
gate, admission, the firing ledger, Celery's queues and task registration, the web's lists and
the API's job enumeration all read the catalogue; nothing else names a job's properties.

Adding a job (README, "Adding a job"): a body module (a function of a
:class:`gim_tasks.jobs.base.JobContext`), a catalogue row, and the ``[schedule]`` option rows
its row needs (:class:`OptionRow`). Site jobs live outside the package: a module named in
``GIM_JOB_MODULES`` exposes ``JOBS = (JobSpec(...), ...)`` and is loaded by every process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Literal, Protocol

from gim_tasks.schedule.options import ScheduleOptions

#: The exclusivity classes of the gate's table (``gim_tasks.schedule.gate.TABLE``): a job
#: takes the rules of its class. A new job usually takes ``export``'s: it runs beside ETL and
#: waits while maintenance runs or waits to run.
EXCLUSIVITY = (
    "extract",
    "transform",
    "aggregation",
    "maintenance",
    "statistics",
    "export",
    "backfill",
)

#: How a job's scheduled runs come about: its own firing stream, aggregation windows (S7),
#: after each scheduled Extract completes (S3), or as the items of operators' back-fills (B1).
Fires = Literal["stream", "window", "after-extract", "backfill"]

#: The value types an :class:`OptionRow` may declare (``gim_tasks.options.registry`` maps them
#: to the option store's types).
OptionKind = Literal["boolean", "cron", "clock-time", "duration"]


class Stream(Protocol):
    """A job's firings: the next instant after one, the newest at or before one."""

    def next_after(self, instant: datetime, tz: tzinfo) -> datetime | None: ...

    def latest_at_or_before(
        self, instant: datetime, tz: tzinfo, not_before: datetime
    ) -> datetime | None: ...


@dataclass(frozen=True)
class OptionRow:
    """A ``[schedule]`` option a job's row brings with it (a site job's switch and schedule)."""

    name: str
    kind: OptionKind
    default: str
    description: str


def _no_stream(options: ScheduleOptions) -> Stream:
    raise ValueError("this job has no firing stream of its own")


@dataclass(frozen=True)
class JobSpec:
    name: str  # exactly the Celery task name (SPEC §1)
    category: str  # SPEC §1 "category", shown in the Scheduled view (A1) and the summary (A4)
    queue: str  # Celery queue of its category
    manual: bool  # may an operator run it by hand (M7: UpdateStats and Export may not)
    enabled_by: str  # the [schedule] option that turns its scheduled launches on
    #: What it does, in one line (Alma's Description column; Genesys "About jobs").
    description: str
    #: The [schedule] options that make up its schedule: shown with links to the Options
    #: page; who changed one last is the schedule's Creator (A1).
    scheduled_by: tuple[str, ...]
    #: Its class in the exclusivity gate's table (one of EXCLUSIVITY).
    exclusivity: str
    #: Its body, ``module:function``, imported by the worker that runs it.
    body: str
    #: Its schedule in words, with the time zone (A1, ``gim schedule next``).
    words: Callable[[ScheduleOptions], str]
    fires: Fires = "stream"
    #: Its firing stream (``fires == "stream"``), from the options in force.
    stream: Callable[[ScheduleOptions], Stream] = _no_stream
    #: Why the scheduler launched it, in the run's history (``fires == "stream"``).
    launched: str = ""
    #: Its stream in the firing ledger (O1); aggregation's windows are ``window-open`` and
    #: ``window-close``; a job that follows Extract has none.
    ledger: str | None = None
    #: The [schedule] option rows it brings (site jobs; the six built-in jobs' options are
    #: declared with the others in ``gim_tasks.options.registry``).
    options: tuple[OptionRow, ...] = ()
    #: B2: the slots of the ``heavy-db`` pool each of its runs takes (0: not in the pool);
    #: ``[pools] weights`` overrides it.
    pool_weight: int = 0

    def switched_on(self, options: ScheduleOptions) -> bool:
        """Its own ``run-*`` flag (S9); ``run-scheduler`` itself is the engine's to read."""
        return self.enabled_by == "run-scheduler" or bool(options.value(self.enabled_by))

    def active(self, options: ScheduleOptions) -> bool:
        """Does the scheduler launch it (the Scheduled view's Active column, A1)?"""
        return options.run_scheduler and self.switched_on(options)
