"""The six jobs of SPEC §1: names (exactly the Celery task names), categories, queues."""

from __future__ import annotations

from dataclasses import dataclass

EXTRACT = "Job_ExtractICON"
TRANSFORM = "Job_TransformGIM"
AGGREGATE = "Job_AggregateGIM"
MAINTAIN = "Job_MaintainGIM"
UPDATE_STATS = "Job_UpdateStats"
EXPORT = "Job_ExportGIM"


@dataclass(frozen=True)
class JobInfo:
    name: str
    category: str  # SPEC §1 "category", shown in the Scheduled view (A1)
    queue: str  # Celery queue of its category
    manual: bool  # may an operator run it by hand (M7: UpdateStats and Export may not)
    enabled_by: str  # the [schedule] option that turns its scheduled launches on
    #: What it does, in one line (Alma's Description column; Genesys "About jobs").
    description: str
    #: The [schedule] options that make up its schedule: shown with links to the Options
    #: page; who changed one last is the schedule's Creator (A1).
    scheduled_by: tuple[str, ...]


_ETL = ("timezone", "run-scheduler", "etl-start-time", "etl-end-time", "etl-frequency")
JOBS: tuple[JobInfo, ...] = (
    JobInfo(
        EXTRACT,
        "ETL",
        "etl",
        True,
        "run-scheduler",
        "Extracts new and changed data from every IDB into staging: the first step of an ETL "
        "cycle.",
        _ETL,
    ),
    JobInfo(
        TRANSFORM,
        "ETL",
        "etl",
        True,
        "run-scheduler",
        "Transforms the extracted data into dimensions and facts: the second step of an ETL "
        "cycle, started when its Extract completes.",
        _ETL,
    ),
    JobInfo(
        AGGREGATE,
        "Aggregation",
        "aggregate",
        True,
        "run-aggregates",
        "Keeps the aggregate tables current, continuously while its window is open; "
        "re-aggregates a range on request.",
        ("timezone", "run-scheduler", "run-aggregates", "aggregate-schedule", "aggregate-duration"),
    ),
    JobInfo(
        MAINTAIN,
        "Maintenance",
        "maintenance",
        True,
        "run-maintain",
        "Maintains the Info Mart alone: calendars, day partitions, purge of expired data.",
        ("timezone", "run-scheduler", "run-maintain", "maintain-start-time"),
    ),
    JobInfo(
        UPDATE_STATS,
        "Statistics",
        "stats",
        False,
        "run-update-stats",
        "Updates PostgreSQL's planner statistics of the Info Mart tables.",
        ("timezone", "run-scheduler", "run-update-stats", "update-stats-schedule"),
    ),
    JobInfo(
        EXPORT,
        "Export",
        "export",
        False,
        "run-export",
        "Exports new facts and dimensions to CSV files.",
        ("timezone", "run-scheduler", "run-export", "export-schedule"),
    ),
)
BY_NAME = {job.name: job for job in JOBS}
JOB_NAMES = tuple(job.name for job in JOBS)
CATEGORIES = tuple(dict.fromkeys(job.category for job in JOBS))
