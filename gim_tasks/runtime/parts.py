"""Extract fan-out (SPEC H2): one ETL cycle's Extract as parts, one per IDB, on any worker.

The cycle stays one run (S2, S3): its ``job_run`` row is Running until every part ended, so
Transform, which waits for Extract, waits for them all. The run's own worker is the
coordinator: it records the parts (``extract_part``), sends one message per part to the etl
queue, and takes parts itself until none waits, then watches the others to their end.

- **Claim.** A part goes from scheduled to running with a fencing token of its own
  (``nextval('fencing_seq')``) only while its run is Running; the claim's ``FOR UPDATE SKIP
  LOCKED`` and the ``state = 'scheduled'`` condition let exactly one claimer win, so a message
  delivered twice, or the coordinator and a worker reaching for the same part, run it once.
- **Fence.** Every transaction a part commits first locks its part row and its run row ``FOR
  SHARE`` and checks both tokens (:func:`fence_for`). Declaring a part lost, ending the run
  (any path: trigger ``extract_part_follow`` abandons its parts) or a new claim all update
  those rows, so a part that lost its lease can never commit afterwards.
- **Heartbeat.** A part's thread renews ``heartbeat_at`` and reads its run's stop request: a
  stop of the run stops every part at its next batch (M6); a part whose run ended or whose
  lease was taken stops too.
- **Loss.** The coordinator gives a part whose heartbeat is older than the lease back to
  ``scheduled`` (``lost`` + 1), ends the lost process's database sessions first (a paused
  process may hold a staging table's writer lock), and sends it again: it is rerun alone, the
  other parts keep what they did. Extraction marks are per IDB and table (jobs/extract.py), so
  the rerun continues from the lost part's last committed batch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gim_tasks.db.engine import session_name
from gim_tasks.errors import GimError
from gim_tasks.jobs.base import JobContext, StopRequested, StopToken
from gim_tasks.lifecycle import RunState
from gim_tasks.runtime.runs import LeaseLost
from gim_tasks.runtime.runs import execute as execute_body

log = logging.getLogger("gim_tasks.runtime.parts")

#: What a part's body does: extract one IDB (its URL) in the given context; rows copied.
PartBody = Callable[[JobContext, str], int]
#: How the coordinator sends a part to the workers: (run id, IDB name).
Send = Callable[[int, str], None]

WAITING = "scheduled"
ENDED = ("completed", "failed", "stopped", "abandoned")
#: A part's end state from its body's run state (any other: failed).
PART_STATE: dict[str, str] = {
    RunState.COMPLETED: "completed",
    RunState.COMPLETED_WITH_WARNINGS: "completed",
    RunState.STOPPED: "stopped",
}


class PartFailed(GimError):
    """An IDB's part of an Extract run failed; the run fails naming it (the other parts'
    committed batches stay, R1)."""


@dataclass(frozen=True)
class Part:
    run_id: int
    idb: str
    token: int
    run_token: int


def plan(conn: Connection, run_id: int, names: list[str]) -> None:
    """Record the parts of a run, in the order given (inside the run's fenced transaction)."""
    conn.execute(
        sa.text(
            "INSERT INTO extract_part (run_id, idb, position) "
            "SELECT :run, name, ord "
            "FROM unnest(CAST(:names AS text[])) WITH ORDINALITY AS n(name, ord) "
            "ON CONFLICT DO NOTHING"
        ),
        {"run": run_id, "names": names},
    )


def claim(engine: Engine, run_id: int, worker: str, idb: str | None = None) -> Part | None:
    """Claim ``idb``'s part of the run, or (None) the next waiting one; None when there is
    nothing to claim: the part is taken, ended, or its run is no longer Running (S11 for
    parts: a redelivered message does nothing)."""
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "UPDATE extract_part p SET state = 'running', "
                "fencing_token = nextval('fencing_seq'), worker = :worker, "
                "started_at = now(), heartbeat_at = now(), ended_at = NULL, "
                "attempt = p.attempt + 1, error = NULL "
                "FROM job_run r WHERE r.id = p.run_id AND r.state = :running "
                "AND p.run_id = :run AND p.state = 'scheduled' AND p.idb = ("
                "  SELECT idb FROM extract_part WHERE run_id = :run AND state = 'scheduled' "
                "  AND (CAST(:idb AS text) IS NULL OR idb = :idb) "
                "  ORDER BY position LIMIT 1 FOR UPDATE SKIP LOCKED) "
                "RETURNING p.idb, p.fencing_token, r.fencing_token AS run_token"
            ),
            {"run": run_id, "idb": idb, "worker": worker, "running": RunState.RUNNING},
        ).one_or_none()
    if row is None:
        return None
    return Part(run_id, row.idb, int(row.fencing_token), int(row.run_token))


#: Warm shutdown of this worker (SIGTERM): its parts stop at their next batch and are given
#: back (scheduled again, sent again), not ended: another worker continues them.
_shutting_down = threading.Event()
_active: set[StopToken] = set()
_active_lock = threading.Lock()


def shut_down() -> int:
    """Give back this process's running parts (the worker is shutting down); how many."""
    _shutting_down.set()
    with _active_lock:
        for token in _active:
            token.request("worker shutting down: part given back")
        return len(_active)


def fence_for(part: Part) -> Callable[[Connection], None]:
    """The fence of a part's commits: its row and its run's row locked FOR SHARE, both
    tokens still current (see the module docstring)."""

    def fence(conn: Connection) -> None:
        ok = conn.execute(
            sa.text(
                "SELECT 1 FROM extract_part p JOIN job_run r ON r.id = p.run_id "
                "WHERE p.run_id = :run AND p.idb = :idb AND p.state = 'running' "
                "AND p.fencing_token = :token AND r.state = :running "
                "AND r.fencing_token = :run_token FOR SHARE"
            ),
            {
                "run": part.run_id,
                "idb": part.idb,
                "token": part.token,
                "run_token": part.run_token,
                "running": RunState.RUNNING,
            },
        ).scalar_one_or_none()
        if ok is None:
            raise LeaseLost(
                f"part {part.idb} of run {part.run_id} lost its lease "
                f"(fencing token {part.token}): not committing"
            )

    return fence


class Heartbeat(threading.Thread):
    """A part's heartbeat: renews its lease, records its counts, brings its run's stop."""

    def __init__(self, engine: Engine, part: Part, ctx: JobContext, seconds: float) -> None:
        super().__init__(name=f"heartbeat-{part.run_id}-{part.idb}", daemon=True)
        self.engine, self.part, self.ctx, self.seconds = engine, part, ctx, seconds
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.seconds):
            try:
                with self.engine.begin() as conn:
                    row = conn.execute(
                        sa.text(
                            "UPDATE extract_part p SET heartbeat_at = now(), rows_read = :read, "
                            "rows_written = :written FROM job_run r WHERE r.id = p.run_id "
                            "AND p.run_id = :run AND p.idb = :idb AND p.state = 'running' "
                            "AND p.fencing_token = :token "
                            "RETURNING r.state, r.stop_requested_at, r.reason, r.stop_kind, "
                            "r.ended_by"
                        ),
                        {
                            "read": self.ctx.counts.read,
                            "written": self.ctx.counts.written,
                            "run": self.part.run_id,
                            "idb": self.part.idb,
                            "token": self.part.token,
                        },
                    ).one_or_none()
            except sa.exc.SQLAlchemyError as error:  # database away: try again next beat
                log.warning("heartbeat of part %s failed: %s", self.part.idb, error)
                continue
            if row is None:
                self.ctx.stop.request("lease lost: the part was declared lost (R2)")
            elif row.state != RunState.RUNNING:
                self.ctx.stop.request(f"its run ended ({row.state})")
            elif row.stop_requested_at is not None:
                self.ctx.stop.request(row.reason or "stop requested", row.stop_kind, row.ended_by)


def execute(
    engine: Engine,
    part: Part,
    url: str,
    body: PartBody,
    options: Any,
    output_base: Path,
    heartbeat_seconds: float,
    stop: StopToken | None = None,
) -> str:
    """Run a claimed part to its end; returns its end state. ``stop``: the coordinator's own
    stop token, when the coordinator runs the part itself: its stop (a signal, the run's stop
    request) reaches the part at once, while the part's own loss stops only the part."""
    ctx = JobContext(
        mart=engine,
        idb_urls=[url],
        options=options,
        run_id=part.run_id,
        fence=fence_for(part),
        output_base=output_base,
    )
    ctx.stop = StopToken(parent=stop)

    def extract(part_ctx: JobContext) -> None:
        body(part_ctx, url)

    beat = Heartbeat(engine, part, ctx, heartbeat_seconds)
    with _active_lock:
        _active.add(ctx.stop)
    beat.start()
    try:
        state, error = execute_body(extract, ctx)
    finally:
        beat.done.set()
        with _active_lock:
            _active.discard(ctx.stop)
    if (
        state == RunState.STOPPED
        and _shutting_down.is_set()
        and not (stop is not None and stop.requested)
    ):
        outcome = WAITING  # given back: its committed batches stay, the next claimer continues
    else:
        outcome = PART_STATE.get(state, "failed")
    with engine.begin() as conn:
        ended = conn.execute(
            sa.text(
                "UPDATE extract_part SET state = :state, rows_read = :read, "
                "rows_written = :written, error = :error, transient = :transient, "
                "ended_at = CASE WHEN :state = 'scheduled' THEN NULL ELSE now() END, "
                "fencing_token = CASE WHEN :state = "
                "'scheduled' THEN NULL ELSE fencing_token END WHERE run_id = :run "
                "AND idb = :idb AND state = 'running' AND fencing_token = :token"
            ),
            {
                "state": outcome,
                "read": ctx.counts.read,
                "written": ctx.counts.written,
                "error": error if outcome != "stopped" else ctx.stop.reason,
                "transient": ctx.transient,
                "run": part.run_id,
                "idb": part.idb,
                "token": part.token,
            },
        ).rowcount
    if not ended:
        log.warning("part %s of run %s ended %s after losing its lease", part.idb, part.run_id,
                    outcome)  # fmt: skip
    return outcome


def requeue_lost(engine: Engine, run_id: int, lease: float) -> list[str]:
    """Parts of the run whose heartbeat is older than ``lease``: their process's sessions
    ended (those opened before its last heartbeat: a paused process may hold a staging
    table's writer lock), then back to scheduled with ``lost`` + 1. The update waits at most
    2 s for a row lock (a committing batch holds the part FOR SHARE): the next look retries."""
    with engine.connect() as conn:
        lost = conn.execute(
            sa.text(
                "SELECT idb, worker, heartbeat_at FROM extract_part WHERE run_id = :run "
                "AND state = 'running' AND heartbeat_at < now() - make_interval(secs => :lease)"
            ),
            {"run": run_id, "lease": lease},
        ).all()
    if not lost:
        return []
    again = []
    for idb, worker, last_beat in lost:
        try:
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name AND datname = current_database() "
                        "AND pid <> pg_backend_pid() AND backend_start <= :last_beat"
                    ),
                    {"name": session_name(worker), "last_beat": last_beat},
                )
                conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
                moved = conn.execute(
                    sa.text(
                        "UPDATE extract_part SET state = 'scheduled', lost = lost + 1, "
                        "fencing_token = NULL, error = :error WHERE run_id = :run AND idb = :idb "
                        "AND state = 'running' AND heartbeat_at = :last_beat"
                    ),
                    {
                        "run": run_id,
                        "idb": idb,
                        "last_beat": last_beat,
                        "error": f"worker lost (R2): {worker} gave no heartbeat for {lease:g} s",
                    },
                ).rowcount
        except sa.exc.OperationalError as error:  # lock timeout: the next look retries
            log.warning("part %s of run %s: not requeued yet (%s)", idb, run_id, error)
            continue
        if moved:
            log.warning("part %s of run %s lost with %s: rerun", idb, run_id, worker)
            again.append(idb)
    return again


def tally(engine: Engine, run_id: int) -> list[sa.Row[Any]]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT idb, state, attempt, lost, rows_read, rows_written, error, "
                    "transient "
                    "FROM extract_part WHERE run_id = :run ORDER BY position"
                ),
                {"run": run_id},
            )
        )


def stop_waiting(engine: Engine, run_id: int, reason: str) -> None:
    """A stop of the run: its parts not started yet end stopped (running ones stop at their
    next batch through their heartbeat)."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE extract_part SET state = 'stopped', ended_at = now(), error = :reason "
                "WHERE run_id = :run AND state = 'scheduled'"
            ),
            {"run": run_id, "reason": reason},
        )


def coordinate(
    ctx: JobContext,
    body: PartBody,
    *,
    engine: Engine,
    worker: str,
    send: Send | None,
    lease: float,
    heartbeat_seconds: float,
    names: Callable[[str], str],
) -> None:
    """The coordinator's side of a fanned-out Extract run (module docstring). ``send`` is
    None when the run executes in the requesting process (``gim run --local``): it then takes
    every part itself, one after the other, recorded the same way."""
    assert ctx.run_id is not None
    run_id = ctx.run_id
    urls = {names(url): url for url in ctx.idb_urls}
    with ctx.transaction() as conn:  # fenced: only while the run holds its lease
        plan(conn, run_id, list(urls))
    if send is not None:
        for name in list(urls)[1:]:  # the first is the coordinator's own
            send(run_id, name)
    # Lost parts are looked for every heartbeat by a thread of their own, also while the
    # coordinator runs a part itself: a part lost with its worker is sent again once its lease
    # ran out, not once the coordinator's own (often the largest) part is done.
    watching = threading.Event()

    def watch() -> None:
        while not watching.wait(heartbeat_seconds):
            try:
                for name in requeue_lost(engine, run_id, lease):
                    if send is not None:
                        send(run_id, name)
            except Exception:  # the database away: the next look retries
                log.exception("run %s: could not look for lost parts", run_id)

    watcher = threading.Thread(target=watch, name=f"parts-{run_id}", daemon=True)
    watcher.start()
    try:
        rows = _work(ctx, body, engine, worker, urls, heartbeat_seconds)
    finally:
        watching.set()
        watcher.join()
    ctx.counts.summary["rows_per_idb"] = {r.idb: r.rows_read for r in rows}
    ctx.counts.summary["parts"] = {
        r.idb: {"state": r.state, "attempts": r.attempt, "lost": r.lost} for r in rows
    }
    failed = [r for r in rows if r.state == "failed"]
    if failed:
        # L3: a retry of the run may cure it when every failed part's error may be cured
        ctx.transient = all(r.transient for r in failed)
        raise PartFailed("; ".join(f"IDB {r.idb}: {r.error}" for r in failed))
    if ctx.stop.requested or any(r.state != "completed" for r in rows):
        raise StopRequested(ctx.stop.reason or "a part was stopped")
    log.info("extracted %d rows from %d IDBs in parts", ctx.counts.read, len(rows))


def _work(
    ctx: JobContext,
    body: PartBody,
    engine: Engine,
    worker: str,
    urls: dict[str, str],
    heartbeat_seconds: float,
) -> list[sa.Row[Any]]:
    """The coordinator's loop: take waiting parts (also those given back) until none is
    left, then wait for every part to end; the parts' rows at the end."""
    assert ctx.run_id is not None
    run_id = ctx.run_id
    while True:
        if ctx.stop.requested:
            stop_waiting(engine, run_id, ctx.stop.reason)
        else:
            part = claim(engine, run_id, worker)
            if part is not None:
                execute(engine, part, urls[part.idb], body, ctx.options, ctx.output_base,
                        heartbeat_seconds, ctx.stop)  # fmt: skip
                continue
        rows = tally(engine, run_id)
        done = [r for r in rows if r.state in ENDED]
        ctx.counts.read = sum(r.rows_read for r in rows)
        ctx.counts.written = sum(r.rows_written for r in rows)
        ctx.progress("extract parts (IDBs)", len(done), len(rows))
        if len(done) == len(rows):
            return rows
        ctx.stop.wait(0.5)


def of_run(conn: Connection, run_id: int) -> list[dict[str, Any]]:
    """A run's parts for its page and the API (empty for a run without parts)."""
    return [
        {
            "idb": r.idb,
            "state": r.state,
            "attempt": r.attempt,
            "lost": r.lost,
            "worker": r.worker,
            "started_at": r.started_at.isoformat() if r.started_at else None,
            "ended_at": r.ended_at.isoformat() if r.ended_at else None,
            "rows_read": r.rows_read,
            "rows_written": r.rows_written,
            "error": r.error,
        }
        for r in conn.execute(
            sa.text("SELECT * FROM extract_part WHERE run_id = :run ORDER BY position"),
            {"run": run_id},
        )
    ]
