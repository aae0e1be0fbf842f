"""A run's life in one module (SPEC R1, R2, S2, S11, M6, M8): claim, heartbeat, fencing,
finish, the sweeps of lost and abandoned runs, and stop enforcement. Admission (whether a run
may start, and its row) is ``runtime/manager.py`` for manual starts and the beat's
``carry_out`` for firings, both under the admission lock; run states are
``gim_tasks.lifecycle.RunState``.

- **Record.** A run is a ``job_run`` row, written by :func:`record` once admission decided
  (unique firing id, S11) and finished by :func:`finish_run` with its counts.
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
- **Stop and cancel.** :func:`request_stop` records a stop request with who and why (an
  operator's, or the scheduler's planned stops, which never overwrite an operator's);
  :func:`cancel` ends a run that has not started.
- **Sweeps (run by the beat every tick).** Running runs without a heartbeat for the lease end
  Failed "worker lost" (R2), after their process's sessions are ended; waiting in-process
  requests whose process is gone are cancelled; stops not honoured within the grace are
  recorded ``terminated`` and revoked; runs sent but never started are sent again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from gim_tasks import logs
from gim_tasks.db.engine import session_name
from gim_tasks.db.tables import job_run
from gim_tasks.errors import GimError, is_transient
from gim_tasks.jobs.base import Counts, JobContext, StopRequested, StopToken
from gim_tasks.lifecycle import FINAL_STATES, Retry, RunState, StopKind
from gim_tasks.options import store
from gim_tasks.settings import get_settings

log = logging.getLogger("gim_tasks.runtime.runs")


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
    transient: bool = False,
) -> bool:
    """Record a run's end; only while it is still Running (with ``token``, when given).
    Returns False when the run had already been ended elsewhere (e.g. declared lost).

    R4: a Stopped run keeps the kind recorded with its stop request, else takes ``stop_kind``
    (a process that stopped itself: SIGINT, SIGTERM), else ``shutdown``; the constraint
    ``ck_job_run_stopped_has_kind`` refuses a Stopped run without one. Who stopped it stays
    as recorded with the request (M8), else ``ended_by``. L3: a ``transient`` failure of a run
    with attempts left is marked ``retry = pending`` in the same statement: its letters wait
    for the beat's decision (the run-letter trigger reads it)."""
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
                retry=sa.case(
                    (job_run.c.attempt < job_run.c.max_attempts, Retry.PENDING.value),
                    else_=None,
                )
                if transient and state == RunState.FAILED
                else None,
            )
        )
    return bool(result.rowcount)


def execute(body: Callable[[JobContext], None], ctx: JobContext) -> tuple[str, str | None]:
    """Run a body; returns the final state and an error summary (R1). A failure a retry may
    cure (``errors.is_transient``, L3) is noted on ``ctx.transient``."""
    try:
        body(ctx)
    except StopRequested as stop:
        return RunState.STOPPED, str(stop)
    except Exception as error:
        log.error("run %s failed:\n%s", ctx.run_id, traceback.format_exc())
        ctx.transient = is_transient(error)
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
        if "uq_job_run_backfill_item_running" in str(error):  # B1: same day and step running
            reason = "another back-fill item of the same day and step is running (B1)"
        elif "uq_job_run_one_running" in str(error):
            with engine.begin() as conn:
                job = conn.execute(
                    sa.select(job_run.c.job).where(job_run.c.id == run_id)
                ).scalar_one()
            reason = f"already running as run {running_run(engine, job)} (S2)"
        else:
            raise
        with engine.begin() as conn:
            conn.execute(
                sa.update(job_run)
                .where(job_run.c.id == run_id, job_run.c.state == RunState.SCHEDULED)
                .values(
                    state=RunState.REJECTED,
                    ended_at=sa.func.now(),
                    reason=reason,
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
    send_part: Callable[[int, str], None] | None = None,
) -> tuple[str, JobContext, str | None]:
    """Execute a claimed run to its end state, on a worker or in the requesting process (M0:
    the same claim, heartbeat, lease, fencing and end either way). ``stop`` lets the caller
    stop it (signal handlers); ``progress`` also receives the body's progress; ``output_base``
    defaults to the process settings' output directory; ``send_part`` sends an Extract part
    to the workers (H2; None: the run takes its parts itself). Returns the end
    state, the job context (counts) and the error summary."""
    with engine.connect() as conn:
        options = store.load_options(conn)
        job = conn.execute(sa.select(job_run.c.job).where(job_run.c.id == run_id)).scalar_one()
    with logs.running(run_id, job):  # O6: every record of this run carries its id and job
        return _run_claimed(
            engine, run_id, token, body, idb_urls, options, stop, progress, output_base, send_part
        )


def _run_claimed(
    engine: Engine,
    run_id: int,
    token: int,
    body: Callable[[JobContext], None],
    idb_urls: list[str],
    options: Any,
    stop: StopToken | None,
    progress: Callable[[str, int, int | None], None] | None,
    output_base: Path | None,
    send_part: Callable[[int, str], None] | None,
) -> tuple[str, JobContext, str | None]:
    from gim_tasks.jobs.extract import idb_name
    from gim_tasks.runtime import parts

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
    ctx.fan_out = partial(
        parts.coordinate,
        engine=engine,
        worker=worker_name(),
        send=send_part,
        lease=LEASE_SECONDS,
        heartbeat_seconds=HEARTBEAT_SECONDS,
        names=idb_name,
    )
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
        transient=ctx.transient,
    )
    return state, ctx, error


#: Run states as bound parameters of this module's SQL (``:running``, ``:failed``, ...).
STATES = {state.name.lower(): state.value for state in RunState}

STOP_GRACE_SECONDS = 60.0  # M6: cooperative stop first, revoke(terminate) after this


def sweep_lost(engine: Engine, lease: float = LEASE_SECONDS) -> list[int]:
    """R2: Running runs without a heartbeat for LEASE_SECONDS end Failed ("worker lost"), or
    Stopped when a stop had been requested. Their fencing token stops any late write.

    First the sessions of their process are ended: a paused process (SIGSTOP, a frozen VM)
    keeps its locks, the run row's FOR SHARE fence, the extraction marks and a staging table's
    writer lock in the middle of a COPY among them (a COPY waiting for its client is "active",
    so no idle-in-transaction timeout ends it), and would block this sweep and every later run
    of its job. Every session of the process goes, including those it opened after its last
    heartbeat (a parallel table's new connection, just before the pause: the reliability
    suite's sigstop scenario hung on one), unless the process runs another run now: then only
    the sessions older than the lost run's last heartbeat, which cannot be the new run's. The
    update then waits at most 2 s for a row lock, so a tick never hangs (the next tick tries
    again)."""
    with engine.connect() as conn:
        lost = conn.execute(
            sa.text(
                "SELECT id, worker, heartbeat_at FROM job_run WHERE state = :running "
                "AND heartbeat_at < now() - make_interval(secs => :lease)"
            ),
            {"lease": lease, "running": RunState.RUNNING},
        ).all()
    if not lost:
        return []
    for run_id, worker, last_beat in lost:
        if not worker:
            continue
        with engine.begin() as conn:
            ended = conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name AND datname = current_database() "
                    "AND pid <> pg_backend_pid() AND (backend_start <= :last_beat OR NOT "
                    "EXISTS (SELECT 1 FROM job_run r WHERE r.worker = :worker "
                    "AND r.state = :running AND r.id <> :run))"
                ),
                {
                    "running": RunState.RUNNING,
                    "name": session_name(worker),
                    "last_beat": last_beat,
                    "worker": worker,
                    "run": run_id,
                },
            ).scalar_one()
        if ended:
            log.warning("run %s: ended %s session(s) of its lost process %s", run_id, ended, worker)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
            rows = conn.execute(
                sa.text(
                    "UPDATE job_run SET state = CASE WHEN stop_requested_at IS NULL THEN "
                    ":failed ELSE :stopped END, stop_kind = CASE WHEN stop_requested_at IS "
                    "NULL THEN NULL ELSE coalesce(stop_kind, 'shutdown') END, "
                    # L3: a lost worker is transient: a retry may come (letters wait)
                    "retry = CASE WHEN stop_requested_at IS NULL AND attempt < max_attempts "
                    "THEN 'pending' END, "
                    "ended_at = now(), error = coalesce(error, "
                    "'worker lost: no heartbeat for ' || :lease || ' s (R2)') "
                    "WHERE id = ANY(:ids) AND state = :running "
                    "AND heartbeat_at < now() - make_interval(secs => :lease) RETURNING id"
                ),
                {"lease": lease, "ids": [row[0] for row in lost], **STATES},
            ).all()
    except sa.exc.OperationalError as error:
        log.warning("sweep of lost runs postponed: %s", str(error).splitlines()[0])
        return []
    return [row[0] for row in rows]


def sweep_abandoned_waits(engine: Engine, lease: float = LEASE_SECONDS) -> list[int]:
    """R2 for in-process runs that were waiting (Scheduled, M5/S13) or about to start: the
    waiting process renews the row's heartbeat; without one for LEASE_SECONDS the process is
    gone (killed, host lost) and the run is Cancelled, so it neither waits forever nor holds
    back the jobs that wait for it."""
    with engine.begin() as conn:
        rows = conn.execute(
            sa.text(
                "UPDATE job_run SET state = :cancelled, ended_at = now(), reason = "
                "'its waiting process is gone: no heartbeat for ' || :lease || ' s (R2)' "
                "WHERE state = :scheduled AND in_process "
                "AND heartbeat_at < now() - make_interval(secs => :lease) RETURNING id"
            ),
            {"lease": lease, **STATES},
        ).all()
    return [row[0] for row in rows]


def overdue_stops(engine: Engine) -> list[tuple[int, str | None]]:
    """Runs on a worker asked to stop more than STOP_GRACE_SECONDS ago and still Running: they
    are revoked with terminate, so their stop is recorded as ``terminated`` (R4: a stop nobody
    planned). An in-process run has no task to revoke: its process stops it."""
    with engine.begin() as conn:
        rows = conn.execute(
            sa.text(
                # L1: a time limit's stop stays one (R4: a failure either way)
                "UPDATE job_run SET stop_kind = CASE WHEN stop_kind = 'time-limit' THEN "
                "stop_kind ELSE :terminated END WHERE state = :running "
                "AND task_id IS NOT NULL AND NOT in_process "
                "AND stop_requested_at < now() - make_interval(secs => :grace) "
                "RETURNING id, task_id"
            ),
            {"grace": STOP_GRACE_SECONDS, "terminated": StopKind.TERMINATED, **STATES},
        ).all()
    return [(row[0], row[1]) for row in rows]


#: A run sent to a worker but not started after this long has its message sent again.
RESEND_SECONDS = 120


def unclaimed(engine: Engine, older_than: float = RESEND_SECONDS) -> list[tuple[int, str]]:
    """Runs sent to a worker ``older_than`` seconds ago and still not started: their message
    may be lost (Redis restarted without the last writes of its append-only file, a queue
    purged). Each is marked sent again now and returned for sending. A second message for a
    run is harmless: only one claim of it can succeed (execution.claim, Scheduled -> Running
    under a row lock), the other finds it not claimable (S11)."""
    with engine.begin() as conn:
        rows = conn.execute(
            sa.text(
                "UPDATE job_run SET dispatched_at = now() WHERE state = :scheduled AND "
                "NOT in_process AND dispatched_at < now() - make_interval(secs => :age) "
                "RETURNING id, job"
            ),
            {"age": older_than, **STATES},
        ).all()
    return [(row[0], row[1]) for row in rows]


def request_stop(
    conn: Connection, run_id: int, reason: str, by: str, kind: StopKind, first_only: bool = False
) -> bool:
    """M6, R4: record a stop request on a Running run, with who asked and why (its kind). The
    body polls it and stops at its next safe point; the beat revokes the task after
    ``STOP_GRACE_SECONDS``. ``first_only``: only if nobody asked yet (the scheduler's planned
    stops never overwrite an operator's). Returns whether it was recorded."""
    where = [job_run.c.id == run_id, job_run.c.state == RunState.RUNNING]
    if first_only:
        where.append(job_run.c.stop_requested_at.is_(None))
    recorded = conn.execute(
        sa.update(job_run)
        .where(*where)
        .values(
            stop_requested_at=sa.func.coalesce(job_run.c.stop_requested_at, sa.func.now()),
            reason=reason,
            ended_by=by,
            stop_kind=kind.value,
        )
    ).rowcount
    return bool(recorded)


def cancel(conn: Connection, run_id: int, by: str) -> bool:
    """M6: a Scheduled run (waiting, or sent but not started) ends Cancelled, recording who;
    a claim racing with it finds the row no longer Scheduled. Returns whether it was."""
    cancelled = conn.execute(
        sa.update(job_run)
        .where(job_run.c.id == run_id, job_run.c.state == RunState.SCHEDULED)
        .values(
            state=RunState.CANCELLED,
            ended_at=sa.func.now(),
            ended_by=by,
            reason=f"cancelled by {by}",
        )
    ).rowcount
    return bool(cancelled)


def allowed_attempts(conn: Connection, job: str) -> int:
    """L3: 1 + the retries ``[limits] retries`` gives ``job`` (one indexed read; a bad stored
    value, which the configuration check reports, counts as none)."""
    from gim_tasks.db.tables import option_value
    from gim_tasks.options.registry import lookup

    text = conn.execute(
        sa.select(option_value.c.value).where(
            option_value.c.section == "limits", option_value.c.name == "retries"
        )
    ).scalar_one_or_none()
    if not text:
        return 1
    try:
        return 1 + dict(lookup("limits", "retries").parse(text)).get(job, 0)
    except GimError:
        return 1


def record(conn: Connection, values: dict[str, Any]) -> int | None:
    """Record a run decided by admission (the manager's, or the beat's for a firing), in the
    caller's transaction under the admission lock: its row with the state the decision gave
    (Scheduled, or Rejected and ended). A firing's row carries its firing id, unique (S11): a
    second beat's, or a repeated tick's, insert of the same firing is a no-op and returns None.
    Returns the run's id. L3: ``max_attempts`` is the job's ``[limits] retries`` + 1 in force
    now (a later change applies to later runs), unless given (a retry carries its first's)."""
    if "max_attempts" not in values:
        values = {**values, "max_attempts": allowed_attempts(conn, values["job"])}
    statement = insert(job_run).values(**values)
    if values.get("firing_id") is not None:
        statement = statement.on_conflict_do_nothing(
            index_elements=["firing_id"], index_where=sa.text("firing_id IS NOT NULL")
        )
    run_id = conn.execute(statement.returning(job_run.c.id)).scalar_one_or_none()
    return None if run_id is None else int(run_id)
