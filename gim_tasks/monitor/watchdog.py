"""The watchdog (SPEC O2, O3, O4): a process other than the beat that says when firings were
missed, the scheduler went silent, a job fails or data went stale. It never starts a run.

It runs in the web app (a background thread, every ``GIM_WATCHDOG_SECONDS``, default 15) and
as ``gim watchdog`` for deployments without the web. A pass:

1. takes the watchdog lock with a try-lock: another replica's pass in progress means this one
   is skipped (``locks.WATCHDOG``), so each incident is judged once per pass; the partial
   unique index of open incidents is the backstop;
2. marks every ledger firing still undecided at its instant + ``[monitor] grace-seconds``
   ``missed`` and counts each in its job's ``missed`` incident;
3. reads the beat's heartbeat from Redis (``gim:beat``): no tick for ``SILENT_BEAT_SECONDS``
   opens the ``scheduler-down`` incident, a fresh tick resolves it. A watchdog that started
   less than ``[monitor] startup-grace-seconds`` ago and has seen no tick since is *starting*
   (a fresh or restarted stack whose beat is still coming up, issue 31): it judges neither
   the scheduler nor missed firings (step 2) until a tick arrives or the grace ends. Without
   a start instant (a single pass), no heartbeat counts as down once a beat ran here before
   (firings are planned);
4. per job, the newest ended run that has an outcome (R4): a failure opens ``failure``, a
   success resolves it;
5. per category, data older than ``[monitor] freshness-slo-minutes`` opens ``stale-data``
   on the job that produces it; fresh data resolves it;
6. commits, then sends the due alerts (:func:`alerts.deliver`).

So a missed firing is said within grace + one interval of its instant, and a silent beat
within 60 s + one interval of its last tick (the beat writes its heartbeat every tick, at most
a second apart): within O2's grace + 60 s with the default 15 s interval.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gim_tasks.db import locks
from gim_tasks.db.tables import firing, job_run
from gim_tasks.lifecycle import FAILURE, SUCCESS, Condition, Retry, RunState, StopKind, outcome
from gim_tasks.monitor import alerts, days, incidents, ledger, mart_status
from gim_tasks.options import store
from gim_tasks.runtime.state import BEAT_KEY, heartbeat_of
from gim_tasks.schedule.jobs import AGGREGATE, JOB_NAMES, TRANSFORM
from gim_tasks.schedule.localtime import zone
from gim_tasks.settings import Settings

log = logging.getLogger("gim_tasks.monitor.watchdog")

#: No beat tick for this long: the scheduler is down (O2).
SILENT_BEAT_SECONDS = 60
#: The job whose stale data a category's incident names.
PRODUCER = {"ETL": TRANSFORM, "Aggregation": AGGREGATE}
ENDED_WITH_OUTCOME = (
    RunState.COMPLETED,
    RunState.COMPLETED_WITH_WARNINGS,
    RunState.FAILED,
    RunState.STOPPED,
)


@dataclass
class Pass:
    skipped: bool = False  # another replica's pass held the lock
    starting: bool = False  # within the start-up grace, no beat tick seen yet: not judged
    missed: list[str] = field(default_factory=list)  # firing ids marked missed
    scheduler_down: bool = False
    failing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # categories
    days: list[str] = field(default_factory=list)  # Q1, Q2: "condition: day" found
    sent: int = 0
    failed_sends: int = 0


def beat_heartbeat(client: redis.Redis) -> tuple[float | None, str | None]:
    """The beat's last tick (UTC epoch seconds) and who wrote it, or (None, None)."""
    raw: dict[Any, Any] = client.hgetall(BEAT_KEY)
    return heartbeat_of(raw)


def check(
    engine: Engine,
    client: redis.Redis,
    settings: Settings,
    now: datetime | None = None,
    started: datetime | None = None,
) -> Pass:
    """One watchdog pass (see the module's docstring); ``started``: when this watchdog began
    its passes (None: a single pass, no start-up grace)."""
    now = now or datetime.now(UTC)
    result = Pass()
    with engine.begin() as conn:
        if not locks.try_hold(conn, locks.WATCHDOG):
            result.skipped = True
            return result
        options = store.load_options(conn)
        grace = options.get("monitor", "grace-seconds")
        tick, leader = beat_heartbeat(client)
        # No tick since this watchdog started (a fresh or restarted stack): within the
        # start-up grace nothing is judged; past it, the scheduler is down.
        unseen = started is not None and (tick is None or tick < started.timestamp())
        if unseen and started is not None:
            waited = (now - started).total_seconds()
            result.starting = waited < options.get("monitor", "startup-grace-seconds")
        if not result.starting:
            result.scheduler_down = _scheduler(conn, now, tick, leader, started if unseen else None)
            result.missed = _missed(conn, now, grace, options)
        result.failing = _failures(conn)
        result.stale = _freshness(conn, options, now)
        if not result.starting:  # Q1, Q2: deadlines and holes of the last days
            result.days = _days(conn, options, now)
    result.sent, result.failed_sends = alerts.deliver(engine, settings)
    if result.missed or result.scheduler_down:
        log.warning(
            "watchdog: %s firing(s) missed%s",
            len(result.missed),
            "; the scheduler is silent" if result.scheduler_down else "",
        )
    return result


def _days(conn: Connection, options: Any, now: datetime) -> list[str]:
    """Q1, Q2 in a savepoint: a failure there (a table being rebuilt, a lock) is logged and
    leaves the rest of the pass (missed firings, a silent beat, alerts) to do its work."""
    try:
        with conn.begin_nested():
            return [f"{f.condition}: {f.day}" for f in days.check(conn, options, now)]
    except sa.exc.SQLAlchemyError:
        log.exception("watchdog: data days not judged in this pass")
        return []


def _missed(conn: Connection, now: datetime, grace: float, options: Any) -> list[str]:
    """Firings undecided past their grace are missed, but those an operator held (P1-P3:
    their verdict says so, and no incident opens)."""
    from gim_tasks.runtime import holds

    missed = []
    held, tz = holds.load(conn, now), zone(options.schedule().timezone)
    for row in ledger.mark_missed(conn, now, grace, held, tz):
        missed.append(row.firing_id)
        incidents.open_incident(
            conn,
            row.job,
            Condition.MISSED,
            f"no decision on the firing planned at "
            f"{row.planned_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC within {grace} s: "
            "the scheduler was down or stalled",
        )
    return missed


def _scheduler(
    conn: Connection,
    now: datetime,
    tick: float | None,
    leader: str | None,
    unseen_since: datetime | None,
) -> bool:
    """``unseen_since``: when the watchdog started, if no tick came since (past the grace)."""
    if unseen_since is not None:
        detail = f"no beat tick in the {(now - unseen_since).total_seconds():.0f} s since the " + (
            "watchdog started"
            if tick is None
            else f"watchdog started (last at {datetime.fromtimestamp(tick, UTC):%H:%M:%S} UTC "
            f"by {leader})"
        )
    elif tick is None:
        ever = conn.execute(sa.select(sa.exists().select_from(firing))).scalar_one()
        if not ever:
            return False
        detail = "no beat has ticked (no heartbeat in Redis)"
    else:
        silent = now.timestamp() - tick
        if silent <= SILENT_BEAT_SECONDS:
            incidents.resolve(conn, Condition.SCHEDULER_DOWN, jobs=[incidents.SCHEDULER])
            return False
        last = datetime.fromtimestamp(tick, UTC)
        detail = (
            f"no beat tick for {silent:.0f} s (last at {last:%Y-%m-%d %H:%M:%S} UTC by {leader})"
        )
    incidents.ensure_open(conn, incidents.SCHEDULER, Condition.SCHEDULER_DOWN, detail)
    return True


def _failures(conn: Connection) -> list[str]:
    """Open or resolve each job's failure incident from its newest ended run with an outcome
    (an operator's stop and runs that never ran have none, R4). ``ix_job_run_job_created``
    answers each job's newest rows."""
    failing = []
    for job in JOB_NAMES:
        row = conn.execute(
            sa.select(
                job_run.c.id,
                job_run.c.state,
                job_run.c.stop_kind,
                job_run.c.error,
                job_run.c.reason,
            )
            .where(
                job_run.c.job == job,
                job_run.c.state.in_(ENDED_WITH_OUTCOME),
                sa.or_(job_run.c.stop_kind.is_(None), job_run.c.stop_kind != StopKind.OPERATOR),
                # L3: an attempt retried, or still to be decided, is not the outcome
                sa.or_(job_run.c.retry.is_(None), job_run.c.retry == Retry.FINAL),
            )
            .order_by(job_run.c.created_at.desc())
            .limit(1)
        ).one_or_none()
        if row is None:
            continue
        result = outcome(row.state, row.stop_kind)
        if result == FAILURE:
            failing.append(job)
            why = row.error or row.reason or row.stop_kind or ""
            detail = f"run {row.id} {row.state}" + (f": {why.splitlines()[0][:300]}" if why else "")
            incidents.ensure_open(conn, job, Condition.FAILURE, detail, row.id)
        elif result == SUCCESS:
            incidents.resolve(conn, Condition.FAILURE, jobs=[job])
    return failing


def _freshness(conn: Connection, options: Any, now: datetime) -> list[str]:
    schedule = options.schedule()
    judged = {
        "ETL": schedule.run_scheduler,
        "Aggregation": schedule.run_scheduler and schedule.run_aggregates,
    }
    stale_tables: dict[str, list[str]] = {}
    for item in mart_status.data_freshness(conn, now, options):
        if item["stale"] and judged[item["category"]]:
            stale_tables.setdefault(item["category"], []).append(
                f"{item['table']} {item['age_seconds'] / 60:.0f} min old "
                f"(SLO {item['slo_minutes']} min)"
            )
    for category, job in PRODUCER.items():
        if category in stale_tables:
            incidents.ensure_open(
                conn,
                job,
                Condition.STALE_DATA,
                f"{category} data older than its SLO: " + ", ".join(stale_tables[category]),
            )
        else:
            incidents.resolve(conn, Condition.STALE_DATA, jobs=[job])
    return sorted(stale_tables)


class Watchdog(threading.Thread):
    """The web app's watchdog thread: a pass every ``interval`` seconds until stopped."""

    def __init__(self, engine: Engine, settings: Settings, interval: float) -> None:
        super().__init__(name="gim-watchdog", daemon=True)
        self.engine, self.settings, self.interval = engine, settings, interval
        self.client = redis.Redis.from_url(settings.redis_url)
        self.stopping = threading.Event()
        self.started = datetime.now(UTC)  # the start-up grace counts from here (issue 31)

    def run(self) -> None:
        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                check(self.engine, self.client, self.settings, started=self.started)
            except Exception:  # a pass fails (database restarting): log, try the next one
                log.exception("watchdog pass failed")
            self.stopping.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


def run_forever(engine: Engine, settings: Settings, interval: float) -> None:
    """``gim watchdog``: passes until interrupted."""
    watchdog = Watchdog(engine, settings, interval)
    log.info("watchdog: a pass every %s s", interval)
    watchdog.run()
