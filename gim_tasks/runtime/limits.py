"""The beat carries out L1-L3 (``schedule/limits.py`` decides): time limits, slow runs and
collisions ahead, retries of transient failures.

Enforced by the beat, not the worker (apache/airflow#35474: a limit the worker enforces is
not enforced when the worker is stuck): a stop request (M6) is a row the beat writes, and the
existing M6 machinery revokes the task past the grace, or the R2 sweep ends the run of a
paused worker (its stop request makes it Stopped ``time-limit``, not "worker lost").

Concurrency: every write here is idempotent and keyed by the database. A stop request is
recorded once (``first_only``); an incident is opened once per job and condition (the partial
unique index ``uq_incident_open``); a retry's run carries its firing id ``FIRST#k``, unique in
``job_run`` (S11), and the failed attempt leaves ``pending`` in the same transaction, so two
beats make one retry.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gim_tasks.db.tables import firing, incident, job_run
from gim_tasks.lifecycle import COMPLETED_STATES, Condition, Retry, RunState, StopKind, Trigger
from gim_tasks.monitor import audit, incidents
from gim_tasks.runtime import runs
from gim_tasks.schedule.engine import next_runs
from gim_tasks.schedule.jobs import BY_NAME, JOB_NAMES
from gim_tasks.schedule.limits import (
    Finding,
    History,
    Limit,
    RunningRun,
    judge,
    retry_plan,
    slot_job,
)
from gim_tasks.schedule.options import ScheduleOptions

log = logging.getLogger("gim_tasks.runtime.limits")

#: How often the beat looks (a tick is a second; one cheap query when nothing runs).
CHECK_SECONDS = 5.0
#: How long a job's p95 is reused before it is read again.
HISTORY_SECONDS = 60.0
ACTOR = "gim-tasks"
CONDITIONS = {
    "over": Condition.TIME_LIMIT,
    "slow": Condition.SLOW,
    "collision": Condition.COLLISION_AHEAD,
}

# The p95 of each job's last 30 successful runs: per job, a backward scan of
# ix_job_run_job_created that stops at the 30th success (the window function it replaces sorted
# every completed run of every job: 51 ms at 65,000 runs, issue 40). A job runs one at a time
# (S2), so its last 30 created are its last 30 ended.
HISTORY_SQL = sa.text(
    """
    SELECT j.job, count(*) AS successes,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY r.seconds) AS p95
    FROM unnest(CAST(:jobs AS text[])) AS j(job)
    CROSS JOIN LATERAL (
        SELECT extract(epoch FROM ended_at - started_at) AS seconds
        FROM job_run
        WHERE job = j.job AND state = ANY(CAST(:completed AS text[]))
          AND started_at IS NOT NULL AND ended_at IS NOT NULL
        ORDER BY created_at DESC
        LIMIT 30
    ) AS r
    GROUP BY j.job
    """
)


def load_history(conn: Connection) -> dict[str, History]:
    rows = conn.execute(
        HISTORY_SQL, {"jobs": list(JOB_NAMES), "completed": list(COMPLETED_STATES)}
    ).all()
    return {row.job: History(int(row.successes), float(row.p95)) for row in rows}


def next_slots(
    options: ScheduleOptions, now: datetime
) -> tuple[dict[str, datetime], datetime | None]:
    """Each job's Next Run after ``now`` (the engine's, A1), and the next maintenance start."""
    found = {job: at for job, at in next_runs(options, now).items() if at is not None}
    maintenance = [at for job, at in found.items() if BY_NAME[job].exclusivity == "maintenance"]
    return found, min(maintenance, default=None)


@dataclass
class Limits:
    """The beat's state for L1-L3: when it last looked, the cached history."""

    last_check: float = 0.0
    history: dict[str, History] = field(default_factory=dict)
    history_at: float = 0.0

    def due(self) -> bool:
        return time.monotonic() - self.last_check >= CHECK_SECONDS

    def check(self, engine: Engine, app: Any, options: Any, now: datetime) -> list[Finding]:
        """One pass: time limits, slow runs, collisions ahead; retries due. Returns the
        findings (for logs and tests)."""
        self.last_check = time.monotonic()
        schedule = options.schedule()
        with engine.connect() as conn:
            running = _running(conn)
            if time.monotonic() - self.history_at >= HISTORY_SECONDS:
                self.history, self.history_at = load_history(conn), time.monotonic()
        found: list[Finding] = []
        slots, maintenance_at = next_slots(schedule, now)
        limits = {
            job: Limit(job, seconds, action)
            for job, seconds, action in options.get("limits", "max-runtime")
        }
        found = judge(
            running,
            limits,
            self.history,
            options.get("limits", "slow-factor"),
            slots,
            maintenance_at,
            timedelta(minutes=options.get("limits", "collision-warning-minutes")),
            now,
        )
        _carry_out(engine, found)
        start_retries(engine, app, options, now, self.history, slots, maintenance_at)
        return found


def _running(conn: Connection) -> list[RunningRun]:
    rows = conn.execute(
        sa.select(
            job_run.c.id,
            job_run.c.job,
            job_run.c.started_at,
            job_run.c.stop_requested_at,
            job_run.c.summary,
        ).where(job_run.c.state == RunState.RUNNING, job_run.c.started_at.is_not(None))
    ).all()
    found = []
    for row in rows:
        if row.job not in BY_NAME:
            continue
        progress = (row.summary or {}).get("progress") or {}
        done, total = progress.get("done"), progress.get("total")
        pair = (float(done), float(total)) if done and total else None
        found.append(
            RunningRun(row.id, row.job, row.started_at, row.stop_requested_at is not None, pair)
        )
    return found


def _carry_out(engine: Engine, found: list[Finding]) -> None:
    """Stop requests and incidents for the findings. An open incident whose run is no longer
    found (it ended, or sped up) is resolved first, so the next run of the job gets one of
    its own: one per run, at most one open per job (``uq_incident_open``)."""
    with engine.begin() as conn:
        for kind, condition in CONDITIONS.items():
            current = {f.run.run_id for f in found if f.kind == kind}
            stale = (
                conn.execute(
                    sa.select(incident.c.job).where(
                        incident.c.condition == condition,
                        incident.c.resolved_at.is_(None),
                        sa.or_(incident.c.run_id.is_(None), incident.c.run_id.not_in(current)),
                    )
                )
                .scalars()
                .all()
            )
            if stale:
                incidents.resolve(conn, condition, jobs=stale)
        for finding in found:
            run = finding.run
            if finding.kind == "over" and finding.action == "stop":
                if not run.stop_requested and runs.request_stop(
                    conn, run.run_id, finding.detail, ACTOR, StopKind.TIME_LIMIT, first_only=True
                ):
                    audit.record(
                        conn,
                        audit.Action.STOP,
                        run.run_id,
                        ACTOR,
                        reason=finding.detail,
                        before={"job": run.job},
                        after={"stop_kind": StopKind.TIME_LIMIT.value},
                    )
                    log.warning("%s", finding.detail)
                continue
            opened = incidents.ensure_open(
                conn, run.job, CONDITIONS[finding.kind], finding.detail, run.run_id
            )
            if opened is not None:
                log.warning("%s", finding.detail)


# ----- L3: retries -------------------------------------------------------------------------


def start_retries(
    engine: Engine,
    app: Any,
    options: Any,
    now: datetime,
    history: dict[str, History],
    slots: dict[str, datetime],
    maintenance_at: datetime | None,
) -> list[int]:
    """Decide every failed attempt whose retry is pending: start attempt k+1 when its delay
    has passed (through the one admission, M0: it may wait for maintenance, S13), or mark the
    attempt ``final`` with the reason (its letters then go: the run-letter trigger). Returns
    the retry runs started."""
    from gim_tasks.runtime.dispatch import send
    from gim_tasks.runtime.manager import InvalidRequest, request_run
    from gim_tasks.schedule.admission import Via

    with engine.connect() as conn:
        pending = conn.execute(
            sa.select(job_run)
            .where(job_run.c.retry == Retry.PENDING, job_run.c.trigger != Trigger.BACKFILL)
            .order_by(job_run.c.id)  # a back-fill's items are retried by their back-fill
        ).all()
    started: list[int] = []
    delay = options.get("limits", "retry-delay-seconds")
    for row in pending:
        expected = history[row.job].p95_seconds if row.job in history else 0.0
        plan = retry_plan(
            row.job,
            row.attempt,
            row.max_attempts,
            row.ended_at,
            delay,
            slots.get(slot_job(row.job)),
            maintenance_at,
            expected,
        )
        if plan.at is None:
            _final(engine, row.id, plan.reason)
            continue
        if now < plan.at:
            continue
        first = row.retry_of or row.id
        base = row.firing_id.split("#")[0] if row.firing_id else f"retry:{first}"
        try:
            admission = request_run(
                engine,
                row.job,
                ACTOR,
                row.params or None,
                bool(row.forced),
                via=Via.CLI,
                now=now,
                firing_id=f"{base}#{row.attempt + 1}",
                retry=(row.id, row.attempt + 1, row.max_attempts),
            )
        except InvalidRequest as error:  # another beat made it first (S11), or no longer valid
            log.info("retry of run %s: %s", row.id, error)
            continue
        if admission.state == RunState.REJECTED:
            _final(engine, row.id, f"retry refused: {admission.reason}")
            continue
        if admission.state == RunState.RUNNING and app is not None:
            send(app, row.job, admission.run_id)
        started.append(admission.run_id)
        log.warning(
            "run %s of %s failed transiently: attempt %s is run %s (L3)",
            row.id,
            row.job,
            row.attempt + 1,
            admission.run_id,
        )
    return started


def _final(engine: Engine, run_id: int, reason: str) -> None:
    """No retry: the attempt is the outcome (its letters go now, the trigger sees the
    change); its reason says why."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(job_run)
            .where(job_run.c.id == run_id, job_run.c.retry == Retry.PENDING)
            .values(
                retry=Retry.FINAL,
                error=sa.func.concat(job_run.c.error, f"; no retry: {reason}"),
            )
        )
    log.warning("run %s: no retry: %s", run_id, reason)


def mark_retried(conn: Connection, failed: int, retry_run: int, firing_id: str | None) -> None:
    """In the retry's own transaction (``manager.request_run``): the failed attempt is
    ``retried`` (only while pending: two beats cannot both), and its ledger row counts the
    attempt and points at the new run."""
    conn.execute(
        sa.update(job_run)
        .where(job_run.c.id == failed, job_run.c.retry == Retry.PENDING)
        .values(retry=Retry.RETRIED)
    )
    if firing_id:
        base = firing_id.split("#")[0]
        conn.execute(
            sa.update(firing)
            .where(firing.c.firing_id == base)
            .values(attempts=firing.c.attempts + 1, run_id=retry_run)
        )
