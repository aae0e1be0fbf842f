"""Which job names have a body in this version (SPEC §1 names)."""

from __future__ import annotations

from collections.abc import Callable

from gim_tasks.jobs import aggregate, export, extract, maintain, transform, update_stats
from gim_tasks.jobs.base import JobContext
from gim_tasks.schedule.jobs import (
    AGGREGATE,
    EXPORT,
    EXTRACT,
    JOB_NAMES,
    MAINTAIN,
    TRANSFORM,
    UPDATE_STATS,
)

BODIES: dict[str, Callable[[JobContext], None]] = {
    EXTRACT: extract.run,
    TRANSFORM: transform.run,
    MAINTAIN: maintain.run,
    UPDATE_STATS: update_stats.run,
    EXPORT: export.run,
    AGGREGATE: aggregate.run,
}


def body_of(job: str) -> Callable[[JobContext], None]:
    from gim_tasks.errors import GimError

    if job not in JOB_NAMES:
        raise GimError(f"unknown job '{job}'; jobs are {', '.join(JOB_NAMES)}")
    if job not in BODIES:
        raise GimError(f"{job} cannot run in this version yet; runnable: {', '.join(BODIES)}")
    return BODIES[job]
