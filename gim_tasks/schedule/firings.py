"""Every form of firing id, built here and nowhere else (issue 33). A firing id is unique in
``job_run`` (S11: a firing starts at most one run) and names the ledger's row (O1):

- ``JOB:INSTANT``: a planned firing of a job at an instant (UTC, ISO 8601), e.g. an ETL slot;
- ``Job_AggregateGIM:close:INSTANT``: the close of an aggregation window (the ledger's own);
- ``Job_AggregateGIM:OPENED/restart@NOW``: a window's aggregation restarted inside it (S7);
- ``Job_AggregateGIM:resume-of-run-N``: a manual aggregation resumed after maintenance (M3).
"""

from __future__ import annotations

from datetime import UTC, datetime

from gim_tasks.schedule.jobs import AGGREGATE

#: What marks the resumption of a paused manual aggregation in its firing id (M3).
RESUME_MARK = "resume-of-run-"


def firing_id(job: str, planned_at: datetime) -> str:
    """S11: job + planned instant; unique in ``job_run``, so a firing starts at most one run."""
    return f"{job}:{planned_at.astimezone(UTC).isoformat()}"


def close_id(closes: datetime) -> str:
    """The firing id of an aggregation window's close (the open has :func:`firing_id`)."""
    return f"{AGGREGATE}:close:{closes.astimezone(UTC).isoformat()}"


def restart_id(opened: datetime, now: datetime) -> str:
    """A restart of the window opened at ``opened``, decided at ``now`` (S7)."""
    return f"{firing_id(AGGREGATE, opened)}/restart@{now.astimezone(UTC).isoformat()}"


def resume_id(paused_run: int) -> str:
    """The one resumption of the manual aggregation run ``paused_run`` (M3)."""
    return f"{AGGREGATE}:{RESUME_MARK}{paused_run}"
