"""The beat: a RedBeat scheduler that asks the firing engine what to do on every tick.

``celery -A gim_tasks.runtime.celery_app beat -S gim_tasks.runtime.beat:GimScheduler`` (or
``gim beat``). RedBeat's lock (``redbeat::lock``, taken in ``beat_init``) keeps one beat active
when several run for high availability; a standby blocks until the active one is gone.

Each tick (at most one second apart): read the options (a change applies at the next tick),
sweep lost runs (R2), force overdue stops (M6), read the run state, ``decide``, carry the
decisions out, and store the stream cursors in Redis. Exactly-once firing does not depend on
the lock: a Launch is an INSERT with its firing id, unique in ``job_run`` (S11), and only the
beat whose INSERT succeeded sends the task; a redelivered task finds its run already claimed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
import sqlalchemy as sa
from celery.schedules import schedule as celery_schedule
from redbeat import RedBeatScheduler
from redbeat.schedulers import RedBeatSchedulerEntry, get_redis
from sqlalchemy.engine import Engine

from gim_tasks.db import locks
from gim_tasks.db.engine import make_engine
from gim_tasks.db.tables import job_run
from gim_tasks.lifecycle import Channel, RunState, SkipKind
from gim_tasks.monitor import audit, incidents, ledger, notify
from gim_tasks.options import store
from gim_tasks.runtime import backfills, holds, limits, pools, run_at, runs
from gim_tasks.runtime.dispatch import send
from gim_tasks.runtime.health import CachedServerCheck
from gim_tasks.runtime.runs import (
    RESEND_SECONDS,
    STOP_GRACE_SECONDS,
    overdue_stops,
    sweep_abandoned_waits,
    sweep_lost,
    unclaimed,
)
from gim_tasks.runtime.state import BEAT_KEY, load_state, text
from gim_tasks.schedule.engine import Action, Hold, Launch, Release, Skip, Stop, Tick, decide
from gim_tasks.schedule.jobs import BY_NAME
from gim_tasks.schedule.leadership import Lease
from gim_tasks.schedule.localtime import zone
from gim_tasks.settings import get_settings

log = logging.getLogger("gim_tasks.runtime.beat")
CURSORS_KEY = "gim:cursors"
#: H1: a beat whose ticks fail this long (at least twice its lock's timeout) steps down.
STEP_DOWN_SECONDS = 10.0
#: H1: how long a beat that stepped down waits before queueing for the lock again.
STANDBY_HEAD_START = 1.0


def carry_out(engine: Engine, app: Any, tick: Tick, judge: ledger.Judge | None = None) -> None:
    """Record and send each decision. Runs under the admission lock, so a manual start cannot
    interleave with the beat's view of the state. With ``judge``, the ledger's verdicts on the
    firings decided (O1) and the incidents they open or resolve (O3) commit in the same
    transaction as the runs."""
    to_send: list[tuple[str, int]] = []
    decided: list[tuple[Action, int | None]] = []
    to_mail: list[int] = []
    with engine.begin() as conn:
        locks.hold(conn, locks.ADMISSION)
        for action in tick.actions:
            if isinstance(action, Launch | Hold | Skip):
                state = {
                    Launch: RunState.SCHEDULED,
                    Hold: RunState.SCHEDULED,
                    Skip: RunState.REJECTED,
                }[type(action)]
                values: dict[str, Any] = {
                    "job": action.job,
                    "trigger": getattr(action, "trigger", "scheduled"),
                    "actor": "scheduler",
                    "state": state,
                    "reason": action.reason,
                    "firing_id": action.firing_id,
                    "planned_at": action.planned_at,
                }
                if isinstance(action, Launch):
                    values["dispatched_at"] = sa.func.now()
                if isinstance(action, Skip):
                    values["ended_at"] = sa.func.now()
                    values["skip"] = SkipKind.BLOCKED if action.blocked else SkipKind.RULE
                # S11: unique firing id; a second beat's (or a repeated tick's) insert is a no-op.
                run_id = runs.record(conn, values)
                decided.append((action, run_id))
                if run_id is not None and isinstance(action, Launch):
                    pools.take(conn, run_id, action.job)  # B2: the gate found room for it
                    to_send.append((action.job, run_id))
                if run_id is not None and isinstance(action, Skip) and action.blocked:
                    mailed = incidents.blocked_firing(conn, action.job, run_id, action.reason)
                    to_mail.extend(mailed)
                log.info(
                    "%s %s: %s",
                    type(action).__name__.lower(),
                    action.job,
                    action.reason,
                    extra={"job": action.job, "firing_id": action.firing_id, "run_id": run_id},
                )
            elif isinstance(action, Release):
                released = conn.execute(
                    sa.update(job_run)
                    .where(
                        job_run.c.id == action.run_id,
                        job_run.c.state == RunState.SCHEDULED,
                        job_run.c.dispatched_at.is_(None),
                    )
                    .values(dispatched_at=sa.func.now())
                    .returning(job_run.c.in_process)
                ).scalar_one_or_none()
                if released is not None:
                    pools.take(conn, action.run_id, action.job)  # B2
                    # An in-process run is claimed by its waiting process (runtime/local.py).
                    if not released:
                        to_send.append((action.job, action.run_id))
                    log.info(
                        "release run %s (%s): %s",
                        action.run_id,
                        action.job,
                        action.reason,
                        extra={"job": action.job, "run_id": action.run_id},
                    )
            elif isinstance(action, Stop):
                runs.request_stop(
                    conn, action.run_id, action.reason, "scheduler", action.kind, first_only=True
                )
                log.info(
                    "stop run %s (%s): %s",
                    action.run_id,
                    action.job,
                    action.reason,
                    extra={"job": action.job, "run_id": action.run_id},
                )
        to_mail.extend(incidents.resolve_cleared(conn, tick.blocked))
        if judge is not None:
            tz = zone(judge.horizon.options.timezone) if judge.horizon.options else UTC
            judged = ledger.record(
                conn, decided, judge.now, judge.grace, judge.horizon.epoch, judge.state.holds, tz
            )
            incidents.after_verdicts(conn, judged, judge.late_limit)
            ledger.settle_windows(conn, judge.horizon, tick, judge.state, judge.now, judge.grace)
    for job, run_id in to_send:  # after commit: the worker must find the row
        send(app, job, run_id)
    for run_id in to_mail:  # after commit: the notify task must find the rows
        notify.send_task(app, run_id)


MIRROR_PREFIX = "gim-next:"


def mirror_entry(app: Any, job: str, next_run: datetime | None, now: datetime) -> None:
    """Keep RedBeat's entry ``gim-next:<job>`` at the job's Next Run, so RedBeat's schedule
    (the ``redbeat::schedule`` sorted set: score = next due time) and tools that read it show
    the truth. The entry is disabled: RedBeat never sends it; the firing engine decides and
    sends every run (S11). A job with no next run (inactive) has no entry."""
    name = MIRROR_PREFIX + job
    if next_run is None:
        RedBeatSchedulerEntry(name=name, app=app).delete()
        return
    entry = RedBeatSchedulerEntry(
        name=name,
        task=job,
        schedule=celery_schedule(run_every=max(next_run - now, timedelta(seconds=1))),
        enabled=False,
        options={"queue": BY_NAME[job].queue, "gim_next_run": next_run.isoformat()},
        app=app,
    )
    entry.last_run_at = now
    entry.save()
    entry.reschedule(now)  # meta: last_run_at = now, so due_at = now + run_every = next_run
    # The score straight from the engine (RedBeat would compute it from its own clock).
    get_redis(app).zadd(app.redbeat_conf.schedule_key, {entry.key: next_run.timestamp()})


class GimScheduler(RedBeatScheduler):
    """RedBeat plus the firing engine."""

    #: Keep the firing ledger (O1); ``bench runtime`` turns it off to measure its cost.
    LEDGER = True

    def setup_schedule(self) -> None:
        super().setup_schedule()
        settings = get_settings()
        self._engine = make_engine(settings.database_url)
        self._redis = redis.Redis.from_url(settings.redis_url)
        self._last_error = ""

    def keep_lock(self) -> None:
        """Keep RedBeat's beat lock, or step down. A tick that stalled past the lock's timeout
        (a paused process, a slow database) finds the lock expired, perhaps taken by the
        standby beat: RedBeat's extend then raises and Celery beat exits (seen once in a
        `./dev up`). Instead this beat waits as the standby, blocking until it holds the lock
        again; it decides nothing meanwhile, and the firing id (S11) keeps the two beats from
        starting a firing twice in the moment they overlap."""
        lock = getattr(self, "lock", None)
        if lock is None or not getattr(self, "lock_key", None):
            return
        try:
            lock.extend(int(self.lock_timeout))
        except redis.exceptions.LockError as error:
            log.warning("beat: lost the beat lock (%s); waiting as the standby", error)
            lock.acquire()  # blocks while another beat holds it (RedBeat's own start-up wait)
            log.warning("beat: acquired the beat lock again; deciding again")
        self.lease.extended(time.monotonic())

    @property
    def lease(self) -> Lease:
        """H1: when this beat may decide, and when it steps down (schedule/leadership.py)."""
        found = self.__dict__.get("_lease")
        if found is None:
            locked = getattr(self, "lock", None) is not None and getattr(self, "lock_key", None)
            timeout = float(self.lock_timeout) if locked else None
            step_down = max(2 * (timeout or 0), STEP_DOWN_SECONDS)
            found = self.__dict__["_lease"] = Lease(timeout, step_down)
        return found

    def deciding(self) -> bool:
        """May this beat decide now (its lock surely still its own)? Said once when not."""
        if self.lease.may_decide(time.monotonic()):
            return True
        log.warning(
            "beat: %.1f s since the beat lock was last extended (timeout %s s): the standby may "
            "hold it; deciding nothing (H1)",
            time.monotonic() - (self.lease.extended_at or 0),
            self.lease.timeout,
        )
        return False

    def step_down(self) -> None:
        """H1: ticks failing for a while (Redis reached, PostgreSQL not): give the lock up so a
        standby that reaches the database fires the next slot, then queue for it again."""
        lock = getattr(self, "lock", None)
        if lock is None:
            return
        log.warning(
            "beat: ticks failing for %.0f s; releasing the beat lock to a standby (H1)",
            self.lease.step_down_after,
        )
        with contextlib.suppress(redis.exceptions.LockError):
            lock.release()
        self.lease.succeeded()
        self.lease.extended_at = None
        time.sleep(STANDBY_HEAD_START)  # a standby blocked on the lock takes it meanwhile
        lock.acquire()
        self.lease.extended(time.monotonic())
        log.warning("beat: holds the beat lock again")

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self.keep_lock()
        interval = float(super().tick(*args, **kwargs))
        self.lease.extended(time.monotonic())  # RedBeat's tick extended it too
        started = time.perf_counter()
        wait = 1.0
        try:
            now = self.now()
            with audit.origin(Channel.BEAT):  # P6: what a tick changes is the beat's doing
                tick = self.gim_tick(now)
            self._last_error = ""
            self.lease.succeeded()
            upcoming = [at for at in tick.next_runs.values() if at is not None and at > now]
            if upcoming:
                # Wake up right at the next firing rather than up to a tick late.
                wait = min(wait, (min(upcoming) - now).total_seconds() + 0.005)
        except Exception as error:
            message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            if message != self._last_error:
                log.exception("scheduler tick failed")
            self._last_error = message
            if self.lease.failed(time.monotonic()):
                self.step_down()
        elapsed = time.perf_counter() - started
        return max(0.005, min(interval, wait - elapsed))

    def mirror(self, next_runs: Any, now: datetime) -> None:
        """Write RedBeat entries for the Next Runs that changed since the last tick."""
        written: dict[str, datetime | None] = self.__dict__.setdefault("_mirrored", {})
        if written and not self._redis.exists(self.app.redbeat_conf.schedule_key):
            # H1: Redis came back empty: write every entry again, and send every run that was
            # sent and has not started again at the next sweep (its message is gone with the
            # rest; a second message is harmless: one claim succeeds, S11).
            written.clear()
            self.__dict__["_resend_now"] = True
            log.warning("beat: Redis lost its data; writing the entries and resending runs (H1)")
        for job, at in next_runs.items():
            if job in BY_NAME and (job not in written or written[job] != at):
                mirror_entry(self.app, job, at, now)
                written[job] = at

    def now(self) -> datetime:
        """The wall clock the firing engine decides by (a subclass may shift it: the
        reliability suite's clock-jump scenario)."""
        return datetime.now(UTC)

    def load_cursors(self) -> dict[str, datetime]:
        raw: dict[Any, Any] = self._redis.hgetall(CURSORS_KEY)
        return {text(key): datetime.fromisoformat(text(value)) for key, value in raw.items()}

    def gim_tick(self, now: datetime) -> Tick:
        """One tick, in named steps: sweep, read, plan, decide (the pure engine), carry out
        (with the ledger's judgement, in one transaction), heartbeat."""
        self.sweep(now)
        with self._engine.connect() as conn:
            options = store.load_options(conn)
            state = load_state(conn, self.load_cursors(), now)
        state = self.operator_holds(options, state, now)
        # C2: every error item blocks; server items come from a cache refreshed every 30 s.
        server_check = self.__dict__.get("_server_check")
        if server_check is None:
            server_check = self.__dict__["_server_check"] = CachedServerCheck(get_settings())
        report = server_check.report(options)
        judge = self.plan(options, state, now)
        tick = decide(options.schedule(), now, state, report.refusal)
        if not self.deciding():  # H1: the lock may be another beat's by now
            return replace(tick, actions=(), cursors={})
        carry_out(self._engine, self.app, tick, judge)
        # P4: runs planned at a set time whose instant came, through the one admission (M0).
        grace = judge.grace if judge is not None else 60.0
        if self.deciding():
            run_at.start_due(self._engine, self.app, now, options.schedule().timezone, grace)
        # B1: the next items of active back-fills, after this tick's own launches (an ETL cycle
        # decided now is in the state the gate reads for them).
        if self.deciding():
            backfills.advance(self._engine, self.app, now)
        # L1-L3: time limits, slow runs, collisions ahead, retries (every few seconds).
        guard = self.__dict__.setdefault("_limits", limits.Limits())
        if guard.due() and self.deciding():
            guard.check(self._engine, self.app, options, now)
        self.heartbeat(tick, state, now)
        return tick

    def operator_holds(self, options: Any, state: Any, now: datetime) -> Any:
        """P1 ``until``: pauses whose instant came end now (within one tick, with their
        notice); P5: jobs failing N times in a row pause themselves. Cheap when neither
        applies: one look at the holds just read and at one option."""
        thresholds = dict(options.schedule().value("pause-on-failure"))
        due = any(p.until is not None and p.until <= now for p in state.holds.pauses.values())
        if not due and not thresholds:
            return state
        with self._engine.begin() as conn:
            if due:
                # The ended pause stays in this tick's state: it still holds the firings
                # planned before its `until` (a catch-up, S12), not those at or after it.
                holds.expire(conn, now)
            if thresholds and holds.pause_on_failure(conn, thresholds, now):
                return replace(state, holds=holds.load(conn, now))
        return state

    def sweep(self, now: datetime) -> None:
        """Runs whose worker or waiting process is gone (R2), messages lost on the way (S11),
        mails due (A3), stops not honoured within the grace (M6)."""
        engine = self._engine
        for run_id in sweep_lost(engine):
            log.warning("run %s: worker lost (R2)", run_id)
        for run_id in sweep_abandoned_waits(engine):
            log.warning("run %s: its waiting in-process requester is gone: cancelled", run_id)
        # A3: mails of runs whose notify task is overdue (lost message, worker restarts), and
        # of runs just declared lost. The claim in due_runs keeps ticks from resending.
        lost = self.__dict__.pop("_resend_now", False)
        for run_id, job in unclaimed(engine, 0.0 if lost else RESEND_SECONDS):
            log.warning(
                "run %s of %s not started %s s after it was sent: sending it again",
                run_id,
                job,
                RESEND_SECONDS,
            )
            send(self.app, job, run_id)
        for run_id in notify.due_runs(engine, now):
            notify.send_task(self.app, run_id)
        for run_id, task_id in overdue_stops(engine):
            if task_id:
                log.warning(
                    "run %s did not stop in %s s: revoking with terminate",
                    run_id,
                    STOP_GRACE_SECONDS,
                )
                self.app.control.revoke(task_id, terminate=True)

    def plan(self, options: Any, state: Any, now: datetime) -> ledger.Judge | None:
        """Keep the ledger planned a day ahead (O1); what carry_out needs to judge the tick."""
        if not self.LEDGER:
            return None
        schedule = options.schedule()
        horizon = self.__dict__.setdefault("_horizon", ledger.Horizon())
        if ledger.needs_planning(horizon, schedule, now):
            with self._engine.begin() as conn:
                ledger.keep_planned(conn, horizon, schedule, now)
        return ledger.Judge(
            now,
            options.get("monitor", "grace-seconds"),
            options.get("monitor", "late-alert-seconds"),
            horizon,
            state,
        )

    def heartbeat(self, tick: Tick, state: Any, now: datetime) -> None:
        """Say the beat is alive (O2), mirror Next Runs into RedBeat, keep the cursors."""
        self._redis.hset(BEAT_KEY, mapping={"tick": time.time(), "leader": runs.worker_name()})
        self.mirror(tick.next_runs, now)
        changed: dict[Any, Any] = {
            k: v.isoformat() for k, v in tick.cursors.items() if state.cursors.get(k) != v
        }
        if changed:
            self._redis.hset(CURSORS_KEY, mapping=changed)
