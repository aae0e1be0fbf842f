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


JOBS: tuple[JobInfo, ...] = (
    JobInfo(EXTRACT, "ETL", "etl", True, "run-scheduler"),
    JobInfo(TRANSFORM, "ETL", "etl", True, "run-scheduler"),
    JobInfo(AGGREGATE, "Aggregation", "aggregate", True, "run-aggregates"),
    JobInfo(MAINTAIN, "Maintenance", "maintenance", True, "run-maintain"),
    JobInfo(UPDATE_STATS, "Statistics", "stats", False, "run-update-stats"),
    JobInfo(EXPORT, "Export", "export", False, "run-export"),
)
BY_NAME = {job.name: job for job in JOBS}
JOB_NAMES = tuple(job.name for job in JOBS)
CATEGORIES = tuple(dict.fromkeys(job.category for job in JOBS))
