"""Worker side of a run: claim, heartbeat, fencing, finish (SPEC S2, S11, R2, M6).

- **Claim.** A run is started by moving its ``job_run`` row from Scheduled to Running with a
  fresh fencing token (``nextval('fencing_seq')``). Only one claim can succeed: a redelivered
  or duplicated message finds the row no longer Scheduled and does nothing (S11). The partial
  unique index ``uq_job_run_one_running`` refuses a second Running run of the job (S2).
- **Heartbeat.** A thread renews ``heartbeat_at`` every ``HEARTBEAT_SECONDS`` while the row is
  still Running with our token, and picks up stop requests (M6). If the row is gone from
  Running (the beat's sweep marked it Failed "worker lost" after ``LEASE_SECONDS`` without a
  heartbeat, R2), the body is told to stop.
- **Fencing.** Every transaction a body commits first locks its run row ``FOR SHARE`` and
  checks state and token (:func:`fence`). The sweep's UPDATE needs the row exclusively, so
  either the batch commits before the run is declared lost, or the batch sees it lost and rolls
  back: a paused or partitioned worker can never write after losing its lease.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gim_tasks.db.tables import job_run
from gim_tasks.jobs.base import JobContext, StopToken
from gim_tasks.lifecycle import RunState
from gim_tasks.options import store
from gim_tasks.runtime.runs import execute, finish_run, running_run, worker_name
from gim_tasks.settings import get_settings

log = logging.getLogger("gim_tasks.runtime.execution")

#: R2 bound: a run without a heartbeat for LEASE_SECONDS is lost. Environment overrides exist
#: for tests and for operators who need a faster (or more tolerant) failover.
HEARTBEAT_SECONDS = float(os.environ.get("GIM_HEARTBEAT_SECONDS", "5"))
LEASE_SECONDS = float(os.environ.get("GIM_LEASE_SECONDS", "30"))


class LeaseLost(Exception):
    """The run is no longer Running with our fencing token: it must not commit."""


def claim(engine: Engine, run_id: int, task_id: str | None) -> int | None:
    """Scheduled -> Running with a new fencing token; None when the run is not claimable."""
    try:
        with engine.begin() as conn:
            token = conn.execute(
                sa.update(job_run)
                .where(job_run.c.id == run_id, job_run.c.state == RunState.SCHEDULED)
                .values(
                    state=RunState.RUNNING,
                    started_at=sa.func.now(),
                    heartbeat_at=sa.func.now(),
                    worker=worker_name(),
                    task_id=task_id,
                    fencing_token=sa.text("nextval('fencing_seq')"),
                    dispatched_at=sa.func.coalesce(job_run.c.dispatched_at, sa.func.now()),
                )
                .returning(job_run.c.fencing_token)
            ).scalar_one_or_none()
        return int(token) if token is not None else None
    except sa.exc.IntegrityError as error:
        if "uq_job_run_one_running" not in str(error):
            raise
        with engine.begin() as conn:
            job = conn.execute(sa.select(job_run.c.job).where(job_run.c.id == run_id)).scalar_one()
        other = running_run(engine, job)
        with engine.begin() as conn:
            conn.execute(
                sa.update(job_run)
                .where(job_run.c.id == run_id, job_run.c.state == RunState.SCHEDULED)
                .values(
                    state=RunState.REJECTED,
                    ended_at=sa.func.now(),
                    reason=f"already running as run {other} (S2)",
                )
            )
        return None


def fence_for(run_id: int, token: int) -> Callable[[Connection], None]:
    def fence(conn: Connection) -> None:
        ok = conn.execute(
            sa.select(job_run.c.id)
            .where(
                job_run.c.id == run_id,
                job_run.c.state == RunState.RUNNING,
                job_run.c.fencing_token == token,
            )
            .with_for_update(read=True)
        ).scalar_one_or_none()
        if ok is None:
            raise LeaseLost(f"run {run_id} lost its lease (fencing token {token}): not committing")

    return fence


class Heartbeat(threading.Thread):
    def __init__(self, engine: Engine, run_id: int, token: int, ctx: JobContext) -> None:
        super().__init__(name=f"heartbeat-{run_id}", daemon=True)
        self.engine, self.run_id, self.token, self.ctx = engine, run_id, token, ctx
        self.done = threading.Event()
        self.progress: dict[str, object] = {}

    def note_progress(self, what: str, done: int, total: int | None) -> None:
        """The job's latest progress; the next heartbeat records it for the Running tab."""
        self.progress = {"what": what, "done": done, "total": total}

    def run(self) -> None:
        while not self.done.wait(HEARTBEAT_SECONDS):
            try:
                with self.engine.begin() as conn:
                    row = conn.execute(
                        sa.update(job_run)
                        .where(
                            job_run.c.id == self.run_id,
                            job_run.c.state == RunState.RUNNING,
                            job_run.c.fencing_token == self.token,
                        )
                        .values(
                            heartbeat_at=sa.func.now(),
                            rows_read=self.ctx.counts.read,
                            rows_written=self.ctx.counts.written,
                            # Until the run ends (finish_run writes the final summary).
                            summary={"progress": self.progress} if self.progress else {},
                        )
                        .returning(
                            job_run.c.stop_requested_at,
                            job_run.c.reason,
                            job_run.c.stop_kind,
                            job_run.c.ended_by,
                        )
                    ).one_or_none()
            except sa.exc.SQLAlchemyError as error:  # database away: try again next beat
                log.warning("heartbeat of run %s failed: %s", self.run_id, error)
                continue
            if row is None:
                self.ctx.stop.request("lease lost: the run was declared lost (R2)")
            elif row.stop_requested_at is not None:
                self.ctx.stop.request(row.reason or "stop requested", row.stop_kind, row.ended_by)


def run_claimed(
    engine: Engine,
    run_id: int,
    token: int,
    body: Callable[[JobContext], None],
    idb_urls: list[str],
    stop: StopToken | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
    output_base: Path | None = None,
) -> tuple[str, JobContext, str | None]:
    """Execute a claimed run to its end state, on a worker or in the requesting process (M0:
    the same claim, heartbeat, lease, fencing and end either way). ``stop`` lets the caller
    stop it (signal handlers); ``progress`` also receives the body's progress; ``output_base``
    defaults to the process settings' output directory. Returns the end
    state, the job context (counts) and the error summary."""
    with engine.connect() as conn:
        options = store.load_options(conn)
    ctx = JobContext(
        mart=engine,
        idb_urls=idb_urls,
        options=options,
        run_id=run_id,
        fence=fence_for(run_id, token),
        output_base=output_base or get_settings().output_directory,
    )
    if stop is not None:
        ctx.stop = stop
    heartbeat = Heartbeat(engine, run_id, token, ctx)

    def note(what: str, done: int, total: int | None) -> None:
        heartbeat.note_progress(what, done, total)
        if progress is not None:
            progress(what, done, total)

    ctx.progress = note
    heartbeat.start()
    try:
        state, error = execute(body, ctx)
        if state == RunState.FAILED and error and error.startswith("LeaseLost"):
            log.warning("run %s: %s", run_id, error)
            return RunState.FAILED, ctx, error
    finally:
        heartbeat.done.set()
    finish_run(
        engine,
        run_id,
        state,
        ctx.counts,
        error=error,
        reason=ctx.stop.reason or None,
        ended_by=ctx.stop.by,
        token=token,
        stop_kind=ctx.stop.kind,
    )
    return state, ctx, error
