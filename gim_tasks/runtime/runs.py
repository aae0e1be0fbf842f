"""Run records (SPEC R1, M8) and running a job body under them.

A run is a ``job_run`` row, recorded by admission (runtime/manager.py) or the beat and claimed
by the process that executes it (runtime/execution.py); the partial unique index
``uq_job_run_one_running`` makes the database refuse a second Running run of the same job
(S2), whoever claims it. Here: ending a run, executing a body, the local sweep of lost runs.
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gim_tasks.db.tables import job_run
from gim_tasks.jobs.base import Counts, JobContext, StopRequested
from gim_tasks.lifecycle import RUN_STATES, RunState, StopKind

log = logging.getLogger("gim_tasks.runtime.runs")

#: Every state but Scheduled and Running (R1).
FINAL_STATES = RUN_STATES[2:]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def running_run(engine: Engine, job: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(job_run.c.id).where(job_run.c.job == job, job_run.c.state == RunState.RUNNING)
        ).scalar_one_or_none()


def finish_run(
    engine: Engine,
    run_id: int,
    state: str,
    counts: Counts,
    error: str | None = None,
    reason: str | None = None,
    ended_by: str | None = None,
    token: int | None = None,
    stop_kind: str | None = None,
) -> bool:
    """Record a run's end; only while it is still Running (with ``token``, when given).
    Returns False when the run had already been ended elsewhere (e.g. declared lost).

    R4: a Stopped run keeps the kind recorded with its stop request, else takes ``stop_kind``
    (a process that stopped itself: SIGINT, SIGTERM), else ``shutdown``; the constraint
    ``ck_job_run_stopped_has_kind`` refuses a Stopped run without one. Who stopped it stays
    as recorded with the request (M8), else ``ended_by``."""
    assert state in FINAL_STATES
    condition = [job_run.c.id == run_id, job_run.c.state == RunState.RUNNING]
    if token is not None:
        condition.append(job_run.c.fencing_token == token)
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(job_run)
            .where(*condition)
            .values(
                state=state,
                ended_at=sa.func.now(),
                rows_read=counts.read,
                rows_written=counts.written,
                rows_discarded=counts.discarded,
                warnings=counts.warnings,
                summary=counts.summary,
                error=error,
                reason=sa.func.coalesce(reason, job_run.c.reason)
                if state == RunState.STOPPED
                else reason,
                ended_by=sa.func.coalesce(job_run.c.ended_by, ended_by),
                stop_kind=(
                    sa.func.coalesce(job_run.c.stop_kind, stop_kind or StopKind.SHUTDOWN.value)
                    if state == RunState.STOPPED
                    else None
                ),
            )
        )
    return bool(result.rowcount)


def execute(body: Callable[[JobContext], None], ctx: JobContext) -> tuple[str, str | None]:
    """Run a body; returns the final state and an error summary (R1)."""
    try:
        body(ctx)
    except StopRequested as stop:
        return RunState.STOPPED, str(stop)
    except Exception as error:
        log.error("run %s failed:\n%s", ctx.run_id, traceback.format_exc())
        return (
            RunState.FAILED,
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
        )
    return (RunState.COMPLETED_WITH_WARNINGS if ctx.counts.warnings else RunState.COMPLETED), None


def sweep_lost_local_runs(engine: Engine) -> list[int]:
    """R2 for runs started on this host by processes that no longer exist: Failed, worker lost."""
    host = socket.gethostname() + ":"
    lost = []
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(job_run.c.id, job_run.c.worker).where(
                job_run.c.state == RunState.RUNNING, job_run.c.worker.like(host + "%")
            )
        ).all()
        for run_id, worker in rows:
            pid = int(worker.rsplit(":", 1)[1])
            try:
                os.kill(pid, 0)
                continue
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            conn.execute(
                sa.update(job_run)
                .where(job_run.c.id == run_id)
                .values(state=RunState.FAILED, ended_at=sa.func.now(), error="worker lost (R2)")
            )
            lost.append(run_id)
    return lost
