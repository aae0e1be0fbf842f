"""The job catalogue: the six jobs of SPEC §1, one :class:`~gim_tasks.schedule.spec.JobSpec`
each, and the site jobs of the modules named in ``GIM_JOB_MODULES``.

Job names are written here only (a unit test keeps it so); every other module iterates
``JOBS`` or names a job through the constants below.
"""

from __future__ import annotations

import importlib
import os

from gim_tasks.errors import GimError
from gim_tasks.schedule.cron import parse_cron
from gim_tasks.schedule.options import ScheduleOptions
from gim_tasks.schedule.spec import EXCLUSIVITY, JobSpec

EXTRACT = "Job_ExtractICON"
TRANSFORM = "Job_TransformGIM"
AGGREGATE = "Job_AggregateGIM"
MAINTAIN = "Job_MaintainGIM"
UPDATE_STATS = "Job_UpdateStats"
EXPORT = "Job_ExportGIM"
BACKFILL = "Job_BackfillGIM"
#: H2: the Celery task of one part of an Extract run (one IDB), routed to Extract's queue.
EXTRACT_PART = f"{EXTRACT}.part"


_ETL = ("timezone", "run-scheduler", "etl-start-time", "etl-end-time", "etl-frequency")


def _zoned(words: str, options: ScheduleOptions) -> str:
    return f"{words}, {options.timezone}"


def _window_words(options: ScheduleOptions) -> str:
    hours, minutes = divmod(int(options.aggregate_duration.total_seconds()) // 60, 60)
    opening = options.aggregate_schedule.describe()
    return _zoned(f"windows of {hours:02d}:{minutes:02d} opening {opening}", options)


def _daily_at(options: ScheduleOptions) -> str:
    return _zoned(f"daily at {options.maintain_start.strftime('%H:%M')}", options)


BUILT_IN: tuple[JobSpec, ...] = (
    JobSpec(
        EXTRACT,
        "ETL",
        "etl",
        manual=True,
        enabled_by="run-scheduler",
        description="Extracts new and changed data from every IDB into staging: the first step "
        "of an ETL cycle.",
        scheduled_by=_ETL,
        exclusivity="extract",
        body="gim_tasks.jobs.extract:run",
        words=lambda options: _zoned(options.etl.describe(), options),
        stream=lambda options: options.etl,
        launched="ETL cycle (S1)",
        ledger="etl",
        pool_weight=1,
    ),
    JobSpec(
        TRANSFORM,
        "ETL",
        "etl",
        manual=True,
        enabled_by="run-scheduler",
        description="Transforms the extracted data into dimensions and facts: the second step "
        "of an ETL cycle, started when its Extract completes.",
        scheduled_by=_ETL,
        exclusivity="transform",
        body="gim_tasks.jobs.transform:run",
        words=lambda options: f"after each scheduled {EXTRACT} completes",
        fires="after-extract",
        pool_weight=1,
    ),
    JobSpec(
        AGGREGATE,
        "Aggregation",
        "aggregate",
        manual=True,
        enabled_by="run-aggregates",
        description="Keeps the aggregate tables current, continuously while its window is "
        "open; re-aggregates a range on request.",
        scheduled_by=(
            "timezone",
            "run-scheduler",
            "run-aggregates",
            "aggregate-schedule",
            "aggregate-duration",
        ),
        exclusivity="aggregation",
        body="gim_tasks.jobs.aggregate:run",
        words=_window_words,
        fires="window",
    ),
    JobSpec(
        MAINTAIN,
        "Maintenance",
        "maintenance",
        manual=True,
        enabled_by="run-maintain",
        description="Maintains the Info Mart alone: calendars, day partitions, purge of "
        "expired data.",
        scheduled_by=("timezone", "run-scheduler", "run-maintain", "maintain-start-time"),
        exclusivity="maintenance",
        body="gim_tasks.jobs.maintain:run",
        words=_daily_at,
        stream=lambda options: parse_cron(
            f"{options.maintain_start.minute} {options.maintain_start.hour}"
        ),
        launched="daily maintenance (S4)",
        ledger="maintenance",
        pool_weight=1,
    ),
    JobSpec(
        UPDATE_STATS,
        "Statistics",
        "stats",
        manual=False,
        enabled_by="run-update-stats",
        description="Updates PostgreSQL's planner statistics of the Info Mart tables.",
        scheduled_by=("timezone", "run-scheduler", "run-update-stats", "update-stats-schedule"),
        exclusivity="statistics",
        body="gim_tasks.jobs.update_stats:run",
        words=lambda options: _zoned(options.update_stats_schedule.describe(), options),
        stream=lambda options: options.update_stats_schedule,
        launched="statistics schedule (S6)",
        ledger="statistics",
    ),
    JobSpec(
        EXPORT,
        "Export",
        "export",
        manual=False,
        enabled_by="run-export",
        description="Exports new facts and dimensions to CSV files.",
        scheduled_by=("timezone", "run-scheduler", "run-export", "export-schedule"),
        exclusivity="export",
        body="gim_tasks.jobs.export:run",
        words=lambda options: _zoned(options.export_schedule.describe(), options),
        stream=lambda options: options.export_schedule,
        launched="export schedule (S8)",
        ledger="export",
    ),
    JobSpec(
        BACKFILL,
        "Back-fill",
        "backfill",
        manual=False,
        enabled_by="run-scheduler",
        description="Replays aggregation and export for past days: one run per day and step "
        "of an operator's back-fill (gim backfill), at the lowest priority.",
        scheduled_by=("timezone", "run-scheduler"),
        exclusivity="backfill",
        body="gim_tasks.jobs.backfill:run",
        words=lambda options: "the items of active back-fills (gim backfill list)",
        fires="backfill",
        pool_weight=1,
    ),
)

#: The environment variable naming the modules of site jobs (comma-separated import paths).
MODULES_VARIABLE = "GIM_JOB_MODULES"


def load_site_jobs(modules: str) -> tuple[JobSpec, ...]:
    """The ``JOBS`` rows of each module named in ``modules`` (comma-separated), checked: a
    unique name, a known exclusivity class, a body and, for a stream, a ledger stream and the
    words of its launch. Every process of a deployment must load the same modules (the
    Kubernetes manifests and compose file pass one environment to all)."""
    specs: list[JobSpec] = []
    taken = {spec.name for spec in BUILT_IN}
    for name in (part.strip() for part in modules.split(",")):
        if not name:
            continue
        try:
            module = importlib.import_module(name)
        except ImportError as error:
            raise GimError(f"{MODULES_VARIABLE}: cannot import '{name}': {error}") from None
        for spec in getattr(module, "JOBS", ()):
            problem = _site_job_problem(spec, taken)
            if problem:
                raise GimError(f"{MODULES_VARIABLE}: {name}: {problem}")
            taken.add(spec.name)
            specs.append(spec)
    return tuple(specs)


def _site_job_problem(spec: object, taken: set[str]) -> str | None:
    if not isinstance(spec, JobSpec):
        return f"JOBS holds {spec!r}, not a JobSpec"
    if spec.name in taken:
        return f"job '{spec.name}' is declared twice"
    if spec.exclusivity not in EXCLUSIVITY:
        return (
            f"job '{spec.name}' has exclusivity '{spec.exclusivity}'; allowed: "
            f"{', '.join(EXCLUSIVITY)}"
        )
    if spec.fires != "stream" or not spec.ledger or not spec.launched or ":" not in spec.body:
        return (
            f"job '{spec.name}' needs fires='stream', a ledger stream, the words of its launch "
            "and a body 'module:function'"
        )
    return None


JOBS: tuple[JobSpec, ...] = BUILT_IN + load_site_jobs(os.environ.get(MODULES_VARIABLE, ""))
BY_NAME = {job.name: job for job in JOBS}
JOB_NAMES = tuple(job.name for job in JOBS)
CATEGORIES = tuple(dict.fromkeys(job.category for job in JOBS))
#: Jobs with a firing stream of their own, in catalogue order.
STREAMED = tuple(job for job in JOBS if job.fires == "stream")


def exclusivity_of(job: str) -> str | None:
    """A job's class in the gate's table; None for a job this process does not know (a run
    of a site job whose module this process was not given)."""
    spec = BY_NAME.get(job)
    return spec.exclusivity if spec else None
