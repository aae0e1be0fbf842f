"""In-process runs (SPEC M0): ``gim run --local`` and ``gim aggregate once``.

An in-process run is a real run: it is admitted by the same decision under the same lock as
every other manual start (:func:`gim_tasks.runtime.manager.request_run`), claimed with a
fencing token, heartbeats and holds a lease like a worker's run (so the R2 sweep never takes it
for a lost worker), commits only through the fence, and stops cooperatively on SIGINT (the
operator: Ctrl-C) and SIGTERM (a container stop, ``timeout``), ending Stopped with its kind.
``gim stop RUN`` stops it as it stops a worker's run.

A request that must wait (M5, S13) waits in this process as a Scheduled run (``in_process``:
the beat never sends it to a worker) and says what it waits for; it asks the admission again
every ``poll`` seconds and starts as soon as its rule clears. Interrupted while waiting, or
cancelled with ``gim cancel``, it ends Cancelled and never runs.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gim_tasks.db.tables import job_run
from gim_tasks.jobs.base import Counts, JobContext, StopToken
from gim_tasks.lifecycle import RunState, StopKind
from gim_tasks.runtime import manager
from gim_tasks.runtime.runs import claim, run_claimed, sweep_lost_local_runs
from gim_tasks.schedule.admission import Via

#: How often a waiting in-process run asks the admission again (its heartbeat while waiting).
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class LocalOutcome:
    run_id: int
    state: str  # a final state, or Rejected
    reason: str | None = None
    error: str | None = None
    counts: Counts | None = None


@contextmanager
def stop_on_signals(stop: StopToken, actor: str) -> Iterator[None]:
    """SIGINT stops the run as the operator's stop, SIGTERM as a shutdown (R4); the previous
    handlers come back afterwards. Only the main thread may install handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_int(signum: int, frame: FrameType | None) -> None:
        stop.request(f"stopped by {actor} (interrupt)", StopKind.OPERATOR.value, actor)

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.request("stopped: the process received SIGTERM", StopKind.SHUTDOWN.value, "signal")

    previous = signal.signal(signal.SIGINT, on_int), signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


def run_in_process(
    engine: Engine,
    job: str,
    actor: str,
    body: Callable[[JobContext], None],
    idb_urls: list[str],
    *,
    params: str = "",
    force: bool = False,
    via: Via = Via.LOCAL,
    progress: Callable[[str, int, int | None], None] | None = None,
    on_wait: Callable[[int, str], None] = lambda run_id, reason: None,
    poll: float = POLL_SECONDS,
    output_base: Path | None = None,
    **admission: Any,
) -> LocalOutcome:
    """Admit, wait if the rules say so, claim and execute ``body`` here; the outcome. A
    malformed request raises :class:`gim_tasks.runtime.manager.InvalidRequest` (nothing
    recorded, nothing started)."""
    sweep_lost_local_runs(engine)
    stop = StopToken()
    with stop_on_signals(stop, actor):
        reply = manager.request_run(engine, job, actor, params, force, via=via, **admission)
        if reply.state == RunState.REJECTED:
            return LocalOutcome(reply.run_id, RunState.REJECTED, reply.reason)
        run_id = reply.run_id
        while reply.state == RunState.SCHEDULED:
            on_wait(run_id, reply.reason or "")
            if stop.wait(poll):
                return _cancel_waiting(engine, run_id, stop)
            reply = manager.readmit(engine, run_id, **admission)
        if reply.state != RunState.RUNNING:  # cancelled by an operator while it waited
            return LocalOutcome(run_id, reply.state, reply.reason)
        token = claim(engine, run_id, task_id=None)
        if token is None:
            with engine.connect() as conn:
                row = conn.execute(
                    sa.select(job_run.c.state, job_run.c.reason).where(job_run.c.id == run_id)
                ).one()
            return LocalOutcome(run_id, row.state, row.reason)
        state, ctx, error = run_claimed(
            engine,
            run_id,
            token,
            body,
            idb_urls,
            stop=stop,
            progress=progress,
            output_base=output_base,
        )
    return LocalOutcome(run_id, state, ctx.stop.reason or None, error, ctx.counts)


def _cancel_waiting(engine: Engine, run_id: int, stop: StopToken) -> LocalOutcome:
    reason = f"cancelled while waiting: {stop.reason}"
    with engine.begin() as conn:
        conn.execute(
            sa.update(job_run)
            .where(job_run.c.id == run_id, job_run.c.state == RunState.SCHEDULED)
            .values(
                state=RunState.CANCELLED, ended_at=sa.func.now(), ended_by=stop.by, reason=reason
            )
        )
    return LocalOutcome(run_id, RunState.CANCELLED, reason)
