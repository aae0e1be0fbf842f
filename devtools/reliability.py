"""``./dev reliability``: fault scenarios against a real local stack (issue 11).

Every scenario gets its own Info Mart and IDB databases and its own Redis database on one
throw-away PostgreSQL and one Redis server (loopback, free ports), real ``gim worker`` and
``gim beat`` processes, and the live traffic simulator. It injects its faults, lets the system
recover on its own (lease expiry, beat sweeps, reruns), then drains the ETL fault-free and
compares the facts with a clean reference load of the same source into a fresh database:

* expected: fact rows of the reference load; facts: fact rows after the scenario;
* missing: reference rows absent (by source key), duplicates: rows of a source key beyond the
  first, differ: same key with other content;
* stuck: runs left Running, or sent to a worker a lease or more before the lab stopped and
  never started (one sent later was in flight: cancelled before the drain, named in the notes);
* overlaps: two runs of one job whose [started, ended) intervals intersect (S2);
* double firings: two runs of one scheduler firing (job, planned instant) (S11);
* aggregates: tables that differ from a recomputation from the facts (D3);
* export: intervals written more or less than once (D4).

Each scenario stops by itself within its time limit. Exit code 1 when any scenario loses,
duplicates, overlaps, double-fires or sticks.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from celery import Celery

from devtools.localstack import PostgresServer, RedisServer, free_port
from devtools.netlab import NetLab, network
from devtools.processes import ProcessGroup, worker_args
from gim_tasks.aggregate.compute import ensure_tables, fact_day_span, verify
from gim_tasks.aggregate.registry import HIERARCHIES
from gim_tasks.db import migrate
from gim_tasks.db.engine import make_engine
from gim_tasks.db.tables import job_run
from gim_tasks.errors import GimError
from gim_tasks.idb.generator import generate
from gim_tasks.idb.schema import init_idb
from gim_tasks.jobs.aggregate import run_once
from gim_tasks.jobs.registry import body_of
from gim_tasks.options import store
from gim_tasks.runtime import manager
from gim_tasks.runtime.beat import GimScheduler
from gim_tasks.runtime.dispatch import request_and_send
from gim_tasks.runtime.local import run_in_process
from gim_tasks.runtime.runs import sweep_lost
from gim_tasks.schedule.admission import Via
from gim_tasks.schedule.jobs import (
    AGGREGATE,
    EXPORT,
    EXTRACT,
    MAINTAIN,
    TRANSFORM,
    UPDATE_STATS,
)
from gim_tasks.settings import Settings

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]  # the checkout
GIM = str(BIN / "gim")
LEASE_SECONDS = 4
HEARTBEAT_SECONDS = 1
FACTS = (
    ("interaction_fact", "interaction_id"),
    ("interaction_segment_fact", "segment_id"),
    ("agent_session_fact", "session_id"),
    ("agent_state_fact", "state_id"),
    ("agent_state_reason_fact", "state_id"),
    ("campaign_attempt_fact", "attempt_id"),
)
FINAL = ("Completed", "Completed with warnings", "Failed", "Stopped", "Cancelled", "Rejected")


def _eight_today() -> datetime:
    """08:00 UTC today: source traffic is written from this hour on earlier days (busy
    hours, so that every job has real work)."""
    return datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)


@dataclass
class Result:
    scenario: str
    cycles: int = 0
    expected: int = 0
    facts: int = 0
    missing: int = 0
    duplicates: int = 0
    differ: int = 0
    stuck: int = 0
    overlaps: int = 0
    double_firings: int = 0
    aggregate_mismatches: int = 0
    export_errors: int = 0
    faults: int = 0  # faults injected while a job ran ...
    faults_mid_run: int = 0  # ... of which the job was still running when they landed
    seconds: float = 0.0
    #: H1: recovery times by kind (beat-failover, lost-run, db-failover), one per round.
    recovery: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not (
            self.missing
            or self.duplicates
            or self.differ
            or self.stuck
            or self.overlaps
            or self.double_firings
            or self.aggregate_mismatches
            or self.export_errors
        )


class Lab:
    """One scenario's databases, Redis database, processes and helpers."""

    def __init__(
        self,
        root: Path,
        pg: PostgresServer,
        redis: RedisServer,
        name: str,
        db: int,
        hours: int = 6,
        idb_server: PostgresServer | None = None,
    ):
        self.root, self.pg, self.redis, self.name = root / name, pg, redis, name
        self.root.mkdir(parents=True)
        slug = name.replace("-", "_")
        self.mart_name, self.idb_name = f"mart_{slug}", f"idb_{slug}"
        idb_server = idb_server or pg  # db-failover: the IDB lives on a server of its own
        pg.create_database(self.mart_name)
        idb_server.create_database(self.idb_name)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GIM_")},
            "GIM_DATABASE_URL": pg.url(self.mart_name),
            "GIM_IDB_URLS": idb_server.url(self.idb_name),
            "GIM_REDIS_URL": redis.url(db),
            "GIM_OUTPUT_DIRECTORY": str(self.root),
            "GIM_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
            "GIM_LEASE_SECONDS": str(LEASE_SECONDS),
            "GIM_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            # The suite is not installed (not in the wheel): a beat it starts with its own
            # scheduler class (clock-jump) imports it from the checkout.
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        self.engine = make_engine(self.env["GIM_DATABASE_URL"])
        # The lab's processes' settings, for admission's configuration check (C2) here.
        self.settings = Settings(
            database_url=self.env["GIM_DATABASE_URL"],
            idb_urls=self.env["GIM_IDB_URLS"],  # type: ignore[arg-type]
            redis_url=self.env["GIM_REDIS_URL"],
            output_directory=self.env["GIM_OUTPUT_DIRECTORY"],  # type: ignore[arg-type]
        )
        migrate.upgrade(self.engine)
        self.idb_url = self.env["GIM_IDB_URLS"]  # the first IDB: backlogs and live traffic
        init_idb(make_engine(self.idb_url))
        with psycopg.connect(self.idb_url, autocommit=True) as conn:
            # Yesterday's busy hours: enough rows that every job runs for a while.
            day = _eight_today()
            generate(conn, day - timedelta(days=1), hours, agents=60, queues=8, rate=3000, seed=11)
        self.options(
            {
                ("schedule", "run-scheduler"): "false",
                ("gim-etl", "extract-batch-size"): "500",
                ("gim-export", "output-directory"): str(self.root / "export"),
            }
        )
        self.backlogs = 0
        # Beats, workers and traffic, each logging to ROOT/NAME.log (devtools/processes.py).
        self.group = ProcessGroup(self.env, log_dir=self.root, grace=30.0)
        self.celery = Celery(broker=self.env["GIM_REDIS_URL"])
        self.cycles = 0
        self.cleanups: list[Callable[[], None]] = []
        #: A scenario's own check once every run ended (the drain is over).
        self.after_measure: Callable[[], None] = lambda: None
        #: The network lab the scenario runs on (partition scenarios), else None: loopback.
        self.net: NetLab | None = None
        self.standby: Any = None  # db-failover: the streaming standby on db2

    def add_idb(self, server: PostgresServer, name: str, seed: int) -> str:
        """Another IDB, on ``server``, of another shape (fewer agents, more queues), appended
        to GIM_IDB_URLS; call before starting processes. Returns its URL."""
        server.create_database(name)
        url = server.url(name)
        init_idb(make_engine(url))
        with psycopg.connect(url, autocommit=True) as conn:
            day = _eight_today()
            generate(conn, day - timedelta(days=1), 6, agents=25, queues=14, rate=2500, seed=seed)
        self.env["GIM_IDB_URLS"] = f"{self.env['GIM_IDB_URLS']},{url}"
        self.settings = self.settings.model_copy(
            update={"idb_urls": [*self.settings.idb_urls, url]}
        )
        return url

    def backlog(self, hours: int = 3) -> None:
        """More source traffic (earlier days, new seed), so the next job has real work."""
        self.backlogs += 1
        day = _eight_today()
        with psycopg.connect(self.idb_url, autocommit=True) as conn:
            generate(
                conn,
                day - timedelta(days=1 + self.backlogs),
                hours,
                agents=80,
                queues=8,
                rate=4000,
                seed=100 + self.backlogs,
            )

    # ----- processes ---------------------------------------------------------------------------

    def options(self, values: dict[tuple[str, str], str]) -> None:
        for (section, name), value in values.items():
            store.set_option(self.engine, section, name, value, "reliability")

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        # On the network lab, a process named after a host runs on it (its namespace).
        where = self.net.exec(name) if self.net is not None and name in self.net.hosts else []
        return self.group.start(name, [*where, GIM, *args])

    def worker(self, name: str = "w1", concurrency: int = 2) -> subprocess.Popen[bytes]:
        return self.start(name, *worker_args(f"{name}-{self.name}-{os.getpid()}", concurrency))

    def beat(self, name: str = "beat1") -> subprocess.Popen[bytes]:
        return self.start(name, "beat")

    def traffic(self, seconds: float) -> subprocess.Popen[bytes]:
        return self.start(
            "traffic",
            "idb",
            "simulate",
            "--rate",
            "20000",
            "--writers",
            "3",
            "--duration",
            str(seconds),
        )

    def supervise(self) -> None:
        """Restart a beat or worker that exited on its own, as the deployment's restart policy
        does (compose ``restart: unless-stopped``, Kubernetes): Celery workers and RedBeat
        beats exit with code 1 on some broker connection losses and rely on it."""
        self.group.restart_exited(only=lambda name: name != "traffic")

    def signal(self, name: str, sig: signal.Signals) -> None:
        self.group.signal(name, sig)

    def stop_all(self) -> None:
        self.group.stop_all()

    # ----- runs --------------------------------------------------------------------------------

    def request(self, job: str, force: bool = False) -> manager.Admission:
        return request_and_send(
            self.engine,
            job,
            "reliability",
            force=force,
            via=Via.CLI,
            settings=self.settings,
            app=self.celery,
        )

    def run(self, run_id: int) -> sa.Row[Any]:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(job_run).where(job_run.c.id == run_id)).one()

    def wait(
        self, predicate: Callable[[], bool], limit: float, what: str, poll: float = 0.2
    ) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if predicate():
                return
            self.supervise()
            time.sleep(poll)
        raise TimeoutError(f"{what}: not within {limit:.0f} s")

    def wait_running(self, run_id: int, limit: float = 60) -> None:
        self.wait(
            lambda: self.run(run_id).state != "Scheduled", limit, f"run {run_id} starts", 0.02
        )

    def wait_end(self, run_id: int, limit: float = 120) -> str:
        self.wait(lambda: self.run(run_id).state in FINAL, limit, f"run {run_id} ends")
        return str(self.run(run_id).state)

    def complete(self, job: str, limit: float = 180) -> str:
        """Run ``job`` until a run of it completes (a rejected request waits and retries)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            admission = self.request(job, force=job in (EXPORT, UPDATE_STATS))
            if admission.state == "Rejected":
                time.sleep(0.5)
                continue
            state = self.wait_end(admission.run_id, max(deadline - time.monotonic(), 1))
            if state in ("Completed", "Completed with warnings"):
                return state
        raise TimeoutError(f"{job} did not complete within {limit:.0f} s")

    def cycle(self) -> None:
        self.complete(EXTRACT)
        self.complete(TRANSFORM)
        self.cycles += 1

    def sweep(self) -> None:
        """Wait out the lease, then end lost runs as the beat does (R2)."""
        time.sleep(LEASE_SECONDS + 2 * HEARTBEAT_SECONDS)
        sweep_lost(self.engine, LEASE_SECONDS)

    def local(self, job: str, actor: str, url: str | None = None, once: bool = False) -> None:
        """``gim run JOB --local`` (or ``gim aggregate once``) in this process, against the
        lab's mart or the database at ``url``: the same admission, claim and fencing, without
        a 3 s interpreter start per call (the drain and reference make eight per scenario)."""
        settings = (
            self.settings if url is None else self.settings.model_copy(update={"database_url": url})
        )
        engine = self.engine if url is None else make_engine(url)
        try:
            outcome = run_in_process(
                engine,
                job,
                actor,
                run_once if once else body_of(job),
                settings.idb_urls,
                via=Via.AGGREGATE_ONCE if once else Via.LOCAL,
                refusal=manager.deployment_refusal(engine, settings),
                output_base=settings.output_directory,
            )
        finally:
            if url is not None:
                engine.dispose()
        if outcome.state not in ("Completed", "Completed with warnings"):
            raise RuntimeError(
                f"{job} --local ({actor}): {outcome.state}: {outcome.reason or outcome.error}"
            )

    # ----- measures ----------------------------------------------------------------------------

    def measure(self, result: Result) -> None:
        """After the faults: stop everything, let leases expire, drain fault-free, compare."""
        with self.engine.connect() as conn:
            stopped = conn.execute(sa.text("SELECT now()")).scalar_one()
        self.stop_all()
        with self.engine.connect() as conn:
            live = conn.execute(
                sa.text(
                    "SELECT count(*) FROM job_run WHERE state = 'Running' "
                    "OR (state = 'Scheduled' AND dispatched_at IS NOT NULL)"
                )
            ).scalar_one()
        if live:  # a run of a process that did not end it holds its lease until it expires
            self.sweep()
        with self.engine.connect() as conn:
            # A run sent to a worker less than a lease before the lab stopped was in flight,
            # not stuck: its message went back to the broker at the workers' warm shutdown,
            # and only the stop kept it from starting (the beat resends an unstarted message
            # after the lease, R2). Stuck: sent a lease or more before the stop, not started.
            result.stuck = conn.execute(
                sa.text(
                    "SELECT count(*) FROM job_run WHERE state = 'Running' OR (state = "
                    "'Scheduled' AND dispatched_at < :stopped - make_interval(secs => :lease))"
                ),
                {"lease": LEASE_SECONDS, "stopped": stopped},
            ).scalar_one()
            result.overlaps = conn.execute(
                sa.text(
                    # S2; a back-fill's items run side by side, never two of one day and
                    # step (B1)
                    "SELECT count(*) FROM job_run a JOIN job_run b ON a.job = b.job "
                    "AND (a.trigger <> 'backfill' OR (a.params->>'step' = b.params->>'step' "
                    "AND a.params->>'day' = b.params->>'day')) "
                    "AND a.id < b.id AND a.started_at IS NOT NULL AND b.started_at IS NOT NULL "
                    "AND tstzrange(a.started_at, coalesce(a.ended_at, 'infinity')) && "
                    "tstzrange(b.started_at, coalesce(b.ended_at, 'infinity'))"
                )
            ).scalar_one()
            result.double_firings = conn.execute(
                sa.text(
                    "SELECT count(*) FROM (SELECT job, planned_at FROM job_run WHERE "
                    "planned_at IS NOT NULL AND started_at IS NOT NULL "
                    "GROUP BY 1, 2 HAVING count(*) > 1) d"
                )
            ).scalar_one()
        with self.engine.begin() as conn:  # the drain below needs the jobs free
            in_flight = conn.execute(
                sa.text(
                    "UPDATE job_run SET state = 'Cancelled', ended_at = now(), reason = "
                    "'in flight when the lab stopped (reliability suite)' WHERE state = "
                    "'Scheduled' AND dispatched_at >= :stopped - make_interval(secs => :lease)"
                ),
                {"lease": LEASE_SECONDS, "stopped": stopped},
            ).rowcount
            if in_flight:
                result.notes.append(f"{in_flight} run(s) in flight at the stop, cancelled")
        if result.stuck:  # the drain below needs the jobs free
            with self.engine.begin() as conn:
                for row in conn.execute(
                    sa.text(
                        "SELECT id, job, state, reason, error, dispatched_at, started_at, "
                        "heartbeat_at FROM job_run WHERE state IN ('Running', 'Scheduled')"
                    )
                ):
                    result.notes.append(f"stuck: {dict(row._mapping)}")
                conn.execute(
                    sa.text(
                        "UPDATE job_run SET state = 'Failed', ended_at = now(), "
                        "error = 'stuck (reliability suite)' WHERE state IN ('Running', "
                        "'Scheduled')"
                    )
                )
        for job in (EXTRACT, TRANSFORM, EXTRACT, TRANSFORM):
            self.local(job, "drain")
        self.local(AGGREGATE, "drain", once=True)
        with self.engine.begin() as conn:  # as `gim aggregate verify` (D3)
            ensure_tables(conn)
            span = fact_day_span(conn)
            if span is not None:
                result.aggregate_mismatches = sum(len(verify(conn, h, *span)) for h in HIERARCHIES)
        reference = Reference(self)
        mine, theirs = fact_rows(self.env["GIM_DATABASE_URL"]), reference.rows()
        result.expected = sum(len(rows) for rows in theirs.values())
        result.facts = sum(sum(len(v) for v in rows.values()) for rows in mine.values())
        for table, expected in theirs.items():
            found = mine.get(table, {})
            for key, content in expected.items():
                copies = found.get(key, [])
                if not copies:
                    result.missing += 1
                else:
                    result.duplicates += len(copies) - 1
                    if copies[0] != content:
                        result.differ += 1
            result.duplicates += sum(
                len(v) - 1 for key, v in found.items() if key not in expected and len(v) > 1
            )
        result.cycles = self.cycles
        if self.group.restarts:
            result.notes.append("restarted by the supervisor: " + "; ".join(self.group.restarts))

    def close(self) -> None:
        self.stop_all()
        self.engine.dispose()
        for cleanup in self.cleanups:
            cleanup()


class Reference:
    """A clean load of the lab's source (as it is now) into a fresh Info Mart."""

    def __init__(self, lab: Lab) -> None:
        self.name = f"ref_{lab.name.replace('-', '_')}"
        lab.pg.create_database(self.name)
        self.url = lab.pg.url(self.name)
        migrate.upgrade(make_engine(self.url))
        for job in (EXTRACT, TRANSFORM):
            lab.local(job, "reference", url=self.url)

    def rows(self) -> dict[str, dict[tuple[int, int], Any]]:
        return {
            table: {key: copies[0] for key, copies in keyed.items()}
            for table, keyed in fact_rows(self.url).items()
        }


def fact_rows(url: str) -> dict[str, dict[tuple[int, int], list[str]]]:
    """Per fact table: source key -> the rows (content without run_id) with that key.

    A dimension's surrogate key (``agent_key`` …) stands as the member's source key (IDB,
    source id): surrogate keys are numbered in the order members first reach the mart, which
    differs between several IDBs loaded cycle by cycle and a clean load of them all (a new
    agent of IDB 2 after the first cycle numbers after IDB 3's agents); the member is what
    must be equal."""
    found: dict[str, dict[tuple[int, int], list[str]]] = {}
    with psycopg.connect(url) as conn:
        dimensions = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'dim\\_%'"
            )
        }
        for table, key in FACTS:
            columns = [
                row[0]
                for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                    "AND column_name NOT IN ('run_id', 'date_time_key') ORDER BY column_name",
                    (table,),
                )
            ]
            select = ", ".join(
                f"(SELECT d.idb_id || ':' || d.source_id FROM dim_{name[:-4]} d "  # noqa: S608
                f"WHERE d.{name} = f.{name})"
                if name.endswith("_key") and f"dim_{name[:-4]}" in dimensions
                else f"f.{name}"
                for name in columns
            )
            keyed: dict[tuple[int, int], list[str]] = {}
            for idb_id, source_id, content in conn.execute(
                f"SELECT idb_id, {key}, md5(row({select})::text) FROM {table} f"  # noqa: S608
            ):
                keyed.setdefault((idb_id, source_id), []).append(content)
            found[table] = keyed
    return found


# ----- scenarios ---------------------------------------------------------------------------------

Scenario = Callable[[Lab, Result, bool], None]


def _beat_worker_traffic(lab: Lab) -> None:
    """The usual stack of a scenario: a beat, worker w1 and live source traffic."""
    lab.beat()
    lab.traffic(600)
    lab.worker("w1")


def _prepare(lab: Lab, job: str) -> None:
    """Give ``job`` work to do, so that a fault lands in the middle of it."""
    if job in (EXTRACT, TRANSFORM, AGGREGATE, EXPORT):
        # Transform runs its sources in parallel and is over in a blink on 3 hours.
        lab.backlog(6 if job == TRANSFORM else 3)
    if job in (TRANSFORM, AGGREGATE, EXPORT):
        lab.complete(EXTRACT)
    if job in (AGGREGATE, EXPORT):
        lab.complete(TRANSFORM)


def _fault_during(
    lab: Lab, result: Result, job: str, fault: Callable[[int], object], rng: random.Random
) -> int | None:
    """Start ``job`` (after giving it work), wait a random moment, then inject ``fault``."""
    _prepare(lab, job)
    admission = lab.request(job, force=job in (EXPORT, UPDATE_STATS))
    if admission.state != "Running":
        result.notes.append(f"{job}: {admission.state} ({admission.reason})")
        return None
    lab.wait_running(admission.run_id)
    time.sleep(rng.uniform(0.0, 0.25))
    if lab.run(admission.run_id).state == "Running":
        result.faults_mid_run += 1
    else:
        result.notes.append(f"{job} run {admission.run_id} ended before the fault")
    result.faults += 1
    fault(admission.run_id)
    return admission.run_id


def sigkill_worker(lab: Lab, result: Result, full: bool) -> None:
    """SIGKILL the worker during each job type; a new worker and reruns recover."""
    rng = random.Random(1)
    _beat_worker_traffic(lab)
    lab.cycle()
    for job in [EXTRACT, TRANSFORM, AGGREGATE, MAINTAIN, EXPORT] * (2 if full else 1):
        _fault_during(lab, result, job, lambda _: lab.signal("w1", signal.SIGKILL), rng)
        lab.worker("w1")
        lab.sweep()
        lab.cycle()


def sigkill_worker_retries(lab: Lab, result: Result, full: bool) -> None:
    """L3: with [limits] retries set for every job, a SIGKILLed worker's run is retried by the
    beat itself (sweep, retry, new attempt): no operator rerun; the attempt that follows must
    complete, and the facts still equal the reference (0 lost, 0 duplicated)."""
    rng = random.Random(3)
    # Every job that ends; the continuous aggregation is restarted by its window (S7) instead.
    every = ", ".join(f"{job}=2" for job in (EXTRACT, TRANSFORM, MAINTAIN, EXPORT))
    lab.options({("limits", "retries"): every, ("limits", "retry-delay-seconds"): "5"})
    _beat_worker_traffic(lab)
    lab.cycle()
    for job in [EXTRACT, TRANSFORM, MAINTAIN, EXPORT] * (2 if full else 1):
        run_id = _fault_during(lab, result, job, lambda _: lab.signal("w1", signal.SIGKILL), rng)
        lab.worker("w1")
        if run_id is None or lab.wait_end(run_id, LEASE_SECONDS + 60) != "Failed":
            continue  # it ended before the kill: nothing to retry

        def retried_to_the_end(first: int = run_id, name: str = job) -> bool:
            with lab.engine.connect() as conn:
                last = conn.execute(
                    sa.select(job_run.c.state, job_run.c.retry)
                    .where(sa.or_(job_run.c.id == first, job_run.c.retry_of.is_not(None)))
                    .where(job_run.c.job == name)
                    .order_by(job_run.c.id.desc())
                    .limit(1)
                ).one()
            return last.state in FINAL and last.retry is None and last.state != "Failed"

        lab.wait(retried_to_the_end, 180, f"{job} run {run_id} retried to completion (L3)")
        result.notes.append(f"{job} run {run_id}: retried by the beat")
    lab.cycle()


def sigstop_worker(lab: Lab, result: Result, full: bool) -> None:
    """SIGSTOP a worker past its lease while Extract runs; another worker reruns Extract; then
    SIGCONT: the paused run must not write (its fencing token is stale)."""
    rng = random.Random(2)
    _beat_worker_traffic(lab)
    lab.worker("w2")
    paused_worker: list[str] = []

    def pause(run_id: int) -> None:
        run = lab.run(run_id)
        name = "w1" if run.worker and _worker_of(lab, "w1", run.worker) else "w2"
        lab.signal(name, signal.SIGSTOP)
        paused_worker.append(name)

    for _ in range(2 if full else 1):
        lab.cycle()
        paused_worker.clear()
        run_id = _fault_during(lab, result, EXTRACT, pause, rng)
        if run_id is None:
            continue
        name = paused_worker[0]
        lab.sweep()
        lost = lab.run(run_id)
        lab.cycle()
        lab.signal(name, signal.SIGCONT)
        time.sleep(3 * HEARTBEAT_SECONDS)
        after = lab.run(run_id)
        if (after.state, after.ended_at, after.rows_written) != (
            lost.state,
            lost.ended_at,
            lost.rows_written,
        ):
            result.error = f"run {run_id} changed after losing its lease"
        lab.cycle()


def _worker_of(lab: Lab, name: str, worker: str) -> bool:
    """Is ``worker`` (host:pid of a pool process) a process of the named worker?"""
    pid = int(worker.rsplit(":", 1)[1])
    try:
        return os.getpgid(pid) == lab.group.process(name).pid
    except ProcessLookupError:
        return False


def _restart(server: PostgresServer | RedisServer, down: float) -> None:
    server.stop()
    time.sleep(down)
    server.start()


def restart_redis(lab: Lab, result: Result, full: bool) -> None:
    """Restart Redis while Extract runs (broker, RedBeat lock and cursors go away for a while)."""
    rng = random.Random(4)
    _beat_worker_traffic(lab)
    for _ in range(2 if full else 1):
        lab.cycle()
        run_id = _fault_during(lab, result, EXTRACT, lambda _: _restart(lab.redis, 2), rng)
        if run_id is not None:
            lab.wait_end(run_id)
        lab.cycle()


def restart_postgres(lab: Lab, result: Result, full: bool) -> None:
    """Restart PostgreSQL (fast shutdown: sessions cut) while Extract runs."""
    rng = random.Random(5)
    _beat_worker_traffic(lab)
    for _ in range(2 if full else 1):
        lab.cycle()
        _fault_during(lab, result, EXTRACT, lambda _: _restart(lab.pg, 1), rng)
        lab.sweep()
        lab.cycle()


def idb_restart(lab: Lab, result: Result, full: bool) -> None:
    """Restart the PostgreSQL server of one of two IDBs (another shape) while Extract runs."""
    rng = random.Random(9)
    server = PostgresServer(lab.root / "idb2-postgres", free_port(), fast=False)
    server.start()
    lab.cleanups.append(server.stop)
    lab.add_idb(server, "idb2", seed=91)
    _beat_worker_traffic(lab)
    for _ in range(2 if full else 1):
        lab.cycle()
        # The second IDB gets its own backlog, so its extraction is under way at the fault.
        with psycopg.connect(server.url("idb2"), autocommit=True) as conn:
            day = _eight_today()
            generate(
                conn,
                day - timedelta(days=2 + lab.backlogs),
                3,
                agents=25,
                queues=14,
                rate=4000,
                seed=92 + lab.backlogs,
            )
        run_id = _fault_during(lab, result, EXTRACT, lambda _: _restart(server, 1), rng)
        if run_id is not None:
            lab.wait_end(run_id)
        lab.sweep()
        lab.cycle()  # refused (C2: IDB 2 unreachable) until the server is back, then runs


def extract_fanout_kill(lab: Lab, result: Result, full: bool) -> None:
    """H2: Extract over three IDBs fans out to two workers; the worker running a part (not
    the coordinator) is SIGKILLed mid-way: the part is rerun alone, the run completes, no
    row lost or twice."""
    rng = random.Random(13)
    for k in (2, 3):
        lab.add_idb(lab.pg, f"idb{k}", seed=130 + k)
    lab.options({("gim-etl", "extract-batch-size"): "500"})  # a part commits often
    lab.traffic(600)
    lab.worker("w1", concurrency=1)
    lab.worker("w2", concurrency=1)
    for _ in range(3 if full else 1):
        lab.cycle()
        lab.backlog(6)
        for url in lab.settings.idb_urls[1:]:
            with psycopg.connect(url, autocommit=True) as source:
                generate(source, _eight_today() - timedelta(days=3 + lab.backlogs), 6, agents=25,
                         queues=14, rate=6000, seed=140 + lab.backlogs)  # fmt: skip
        admission = lab.request(EXTRACT)
        if admission.state != "Running":
            result.notes.append(f"{EXTRACT}: {admission.state} ({admission.reason})")
            continue
        run_id = admission.run_id
        lab.wait_running(run_id)
        coordinator = lab.run(run_id).worker

        def victim(run_id: int = run_id, coordinator: str = coordinator) -> Any:
            with lab.engine.connect() as conn:
                return conn.execute(
                    sa.text(
                        "SELECT idb, worker FROM extract_part WHERE run_id = :r "
                        "AND state = 'running' AND worker <> :c"
                    ),
                    {"r": run_id, "c": coordinator},
                ).first()

        lab.wait(lambda: victim() is not None, 120, "a part running on the other worker")
        time.sleep(rng.uniform(0.0, 0.5))
        found = victim()
        if found is None:
            result.notes.append(f"run {run_id}: the part ended before the fault")
            lab.wait_end(run_id)
            continue
        pid = int(found.worker.rsplit(":", 1)[1])
        name = lab.group.holding(pid)
        result.faults += 1
        result.faults_mid_run += 1
        killed_at = _db_now(lab)
        lab.signal(name, signal.SIGKILL)
        lab.worker(name, concurrency=1)
        lab.wait_end(run_id, 300)
        with lab.engine.connect() as db:
            state = db.execute(
                sa.text("SELECT state FROM job_run WHERE id = :r"), {"r": run_id}
            ).scalar_one()
            rerun = db.execute(
                sa.text(
                    "SELECT idb, attempt, lost, started_at FROM extract_part WHERE run_id = :r"
                ),
                {"r": run_id},
            ).all()
        restarted = next(r.started_at for r in rerun if r.idb == found.idb)
        result.recovery.setdefault("lost-part", []).append(
            round((restarted - killed_at).total_seconds(), 1)
        )
        again = [r.idb for r in rerun if r.attempt > 1]
        if state != "Completed":
            result.error = f"H2: run {run_id} ended {state} after a part's worker was killed"
        elif again != [found.idb] or any(r.lost != (r.idb == found.idb) for r in rerun):
            result.error = f"H2: not just the lost part was rerun: {[tuple(r) for r in rerun]}"
        else:
            result.notes.append(f"run {run_id}: part {found.idb} lost with {name}, rerun alone")
    lab.cycle()


def _etl_every_minute(lab: Lab) -> None:
    """Scheduled ETL cycles every minute round the clock, nothing else scheduled."""
    lab.options(
        {
            ("schedule", "run-scheduler"): "true",
            ("schedule", "etl-start-time"): "00:00",
            ("schedule", "etl-end-time"): "00:00",
            ("schedule", "etl-frequency"): "1",
            ("schedule", "run-maintain"): "false",
            ("schedule", "run-update-stats"): "false",
        }
    )


def kill_active_beat(lab: Lab, result: Result, full: bool) -> None:
    """Two beats, ETL every minute: SIGKILL the active one; the standby takes over."""
    _etl_every_minute(lab)
    lab.traffic(600)
    lab.worker("w1")
    lab.beat("beat1")
    time.sleep(2)
    lab.beat("beat2")

    def cycles() -> int:
        with lab.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).where(
                        job_run.c.job == EXTRACT,
                        job_run.c.trigger == "scheduled",
                        job_run.c.started_at.is_not(None),
                    )
                ).scalar_one()
            )

    lab.wait(lambda: cycles() >= 1, 75, "a scheduled ETL cycle")
    for _ in range(2 if full else 1):
        active = _active_beat(lab)
        before = cycles()
        lab.signal(active, signal.SIGKILL)
        lab.wait(lambda: cycles() > before, 90, "a cycle fired by the standby beat")  # noqa: B023 - called at once
        lab.beat(active)  # back as the new standby
        time.sleep(2)
    lab.cycles = cycles()


def _active_beat(lab: Lab) -> str:
    """The beat holding the RedBeat lock: the one whose log shows it ticking."""
    for name in ("beat1", "beat2"):
        log = (lab.root / f"{name}.log").read_text(errors="replace")
        if "beat: Acquired lock" in log or "Acquired lock" in log:
            if lab.group.process(name).poll() is None:
                return name
    return "beat1"


def stop_at_random_points(lab: Lab, result: Result, full: bool) -> None:
    """Stop Job (M6) every job at a random point, then rerun it."""
    rng = random.Random(3)
    _beat_worker_traffic(lab)
    lab.cycle()
    for job in [EXTRACT, TRANSFORM, AGGREGATE, MAINTAIN, EXPORT] * (3 if full else 1):
        run_id = _fault_during(lab, result, job, lambda run: _stop(lab, run), rng)
        if run_id is not None:
            state = lab.wait_end(run_id, 90)
            if state not in ("Stopped", "Completed", "Completed with warnings"):
                result.error = f"{job} run {run_id} ended {state} after a stop request"
        lab.cycle()


def _stop(lab: Lab, run_id: int) -> None:
    with suppress(GimError):  # it may have ended just before the request
        manager.stop_run(lab.engine, run_id, "reliability")


def export_unwritable(lab: Lab, result: Result, full: bool) -> None:
    """Export into a directory that cannot be written (a file is in the way), then repaired:
    the failed run writes nothing, the rerun writes every interval exactly once."""
    lab.beat()
    lab.worker("w1")
    lab.cycle()
    blocker = lab.root / "blocked"
    blocker.write_text("a file where the export directory should be\n")
    lab.options({("gim-export", "output-directory"): str(blocker / "export")})
    admission = lab.request(EXPORT, force=True)
    state = lab.wait_end(admission.run_id)
    if state != "Failed":
        result.error = f"export into an unwritable directory ended {state}, not Failed"
    lab.options({("gim-export", "output-directory"): str(lab.root / "export")})
    for _ in range(2):
        lab.complete(EXPORT)
    result.export_errors = _export_errors(lab)


def _export_errors(lab: Lab) -> int:
    """Intervals exported other than exactly once, and row counts that disagree."""
    chunks = []
    for manifest in (lab.root / "export").glob("*/manifest.json"):
        data = json.loads(manifest.read_text())
        chunks.append((datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"])))
    chunks.sort()
    errors = sum(1 for a, b in zip(chunks, chunks[1:], strict=False) if b[0] != a[1])
    if not chunks:
        errors += 1
    return errors


class JumpingClockScheduler(GimScheduler):
    """The beat with a wall clock shifted by the seconds in $GIM_CLOCK_OFFSET_FILE, re-read
    every tick: an NTP step or a VM resume, as the scheduler sees it (monotonic timers are not
    affected, as with a real step)."""

    def now(self) -> datetime:
        try:
            offset = float(Path(os.environ["GIM_CLOCK_OFFSET_FILE"]).read_text().strip() or 0)
        except (KeyError, OSError, ValueError):
            offset = 0.0
        return datetime.now(UTC) + timedelta(seconds=offset)


def clock_jump(lab: Lab, result: Result, full: bool) -> None:
    """The beat host's clock jumps 10 minutes ahead, then back: after the jump ahead one
    catch-up cycle starts (S12), after the jump back no firing is repeated (S11)."""
    offset = lab.root / "clock-offset"
    offset.write_text("0\n")
    lab.env["GIM_CLOCK_OFFSET_FILE"] = str(offset)
    _etl_every_minute(lab)
    lab.worker("w1")
    lab.start("beat1", "beat", "-S", f"{__name__}:JumpingClockScheduler")

    def planned() -> list[datetime]:
        with lab.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(job_run.c.planned_at)
                    .where(job_run.c.job == EXTRACT, job_run.c.trigger == "scheduled")
                    .order_by(job_run.c.planned_at)
                ).scalars()
            )

    lab.wait(lambda: len(planned()) >= 1, 75, "a scheduled ETL cycle")
    before = planned()
    # About ten minutes ahead, landing 5 s after a minute boundary of the shifted clock: the
    # catch-up cycle then has the wait below to itself (a jump landing at :59 would let the
    # next regular slot fire a second later, and the count below would see two).
    second = datetime.now(UTC).timestamp() % 60
    offset.write_text(f"{600 + 5 - second:.3f}\n")
    lab.wait(lambda: len(planned()) > len(before), 20, "the catch-up cycle after the jump")
    ahead = planned()
    if len(ahead) - len(before) != 1:
        result.error = f"{len(ahead) - len(before)} cycles right after the jump ahead, not 1"
    offset.write_text("0\n")  # back to the true time
    time.sleep(70 if full else 25)  # at least one true minute boundary passes in full mode
    replayed = [at for at in planned()[len(ahead) :] if at <= ahead[-1]]
    if replayed:
        result.error = f"firings repeated after the jump back: {replayed}"
    lab.cycles = len(planned())


def _scheduled_extracts(lab: Lab, since: datetime | None = None) -> list[sa.Row[Any]]:
    with lab.engine.connect() as conn:
        query = sa.select(job_run.c.id, job_run.c.planned_at, job_run.c.created_at).where(
            job_run.c.job == EXTRACT,
            job_run.c.trigger == "scheduled",
            job_run.c.state != "Rejected",
        )
        if since is not None:
            query = query.where(job_run.c.created_at >= since)
        return list(conn.execute(query.order_by(job_run.c.id)))


def _extract_slots(lab: Lab, after: datetime, before: datetime) -> list[sa.Row[Any]]:
    """The ledger's ETL slots strictly between two instants, with their verdicts."""
    with lab.engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT planned_at, verdict, run_id FROM firing WHERE job = :j "
                    "AND planned_at > :a AND planned_at < :b ORDER BY planned_at"
                ),
                {"j": EXTRACT, "a": after, "b": before},
            )
        )


def _incidents(lab: Lab, condition: str) -> list[sa.Row[Any]]:
    with lab.engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT id, job, detail, opened_at, resolved_at FROM incident "
                    "WHERE condition = :c ORDER BY id"
                ),
                {"c": condition},
            )
        )


def _db_now(lab: Lab) -> datetime:
    with lab.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.now())).scalar_one()


def _stopped(lab: Lab, name: str, grace: float = 60) -> None:
    """Stop one process of the lab: SIGTERM (a worker shuts down warmly), SIGKILL after
    ``grace`` seconds."""
    lab.signal(name, signal.SIGTERM)
    try:
        lab.group.process(name).wait(timeout=grace)
    except subprocess.TimeoutExpired:
        lab.signal(name, signal.SIGKILL)


def beat_down(lab: Lab, result: Result, full: bool) -> None:
    """Every beat stopped for 3 minutes, ETL every minute: the ledger shows the missed slots,
    one scheduler-down incident opens and resolves, S12 runs one catch-up cycle (O1, O2)."""
    _etl_every_minute(lab)
    lab.worker("w1")
    lab.beat("beat1")
    lab.start("watchdog", "watchdog", "--interval", "5")
    lab.wait(lambda: len(_scheduled_extracts(lab)) >= 1, 90, "a scheduled ETL cycle")
    _stopped(lab, "beat1")
    stopped = _db_now(lab)
    time.sleep(180)
    down = _incidents(lab, "scheduler-down")
    if [row.resolved_at for row in down] != [None]:
        result.error = f"after 3 minutes without a beat: scheduler-down incidents {down}"
        return
    lab.beat("beat1")
    restarted = _db_now(lab)
    lab.wait(
        lambda: all(row.resolved_at for row in _incidents(lab, "scheduler-down")),
        60,
        "the scheduler-down incident resolved",
    )
    lab.wait(lambda: bool(_scheduled_extracts(lab, restarted)), 60, "the catch-up cycle")
    time.sleep(3)  # any second catch-up would be recorded by now
    catch_up = [row for row in _scheduled_extracts(lab, restarted) if row.planned_at < restarted]
    ledger = _extract_slots(lab, stopped, restarted)
    missed = [row for row in ledger if row.verdict == "missed"]
    undecided = [row for row in ledger if row.verdict is None]
    spans = [
        f"{row.opened_at:%H:%M:%S}-{row.resolved_at:%H:%M:%S}"
        for row in _incidents(lab, "scheduler-down")
    ]
    result.notes.append(
        f"ledger during the downtime: {len(ledger)} slots, {len(missed)} missed; "
        f"catch-up runs {[row.id for row in catch_up]}; scheduler-down {spans}"
    )
    if len(ledger) < 2 or undecided or len(missed) < len(ledger) - 1:
        result.error = f"the ledger does not show the missed slots: {ledger}"
    elif len(catch_up) != 1:
        result.error = f"S12: {len(catch_up)} catch-up cycles, expected one"
    elif len(_incidents(lab, "scheduler-down")) != 1:
        result.error = f"scheduler-down incidents: {_incidents(lab, 'scheduler-down')}"
    result.double_firings += len(catch_up) - 1 if len(catch_up) > 1 else 0
    lab.cycles = len(_scheduled_extracts(lab))


def pause_etl(lab: Lab, result: Result, full: bool) -> None:
    """P1 under a real beat: ETL every minute, paused for 3 minutes (2 in --quick) with an
    until: its slots are judged `paused`, no missed or late incident opens, and the beat
    resumes it within one tick of the until (the pause's incident resolves then)."""
    from gim_tasks.runtime import holds

    _etl_every_minute(lab)
    lab.worker("w1")
    lab.beat("beat1")
    lab.start("watchdog", "watchdog", "--interval", "5")
    lab.wait(lambda: len(_scheduled_extracts(lab)) >= 1, 90, "a scheduled ETL cycle")
    began = _db_now(lab)
    until = began + timedelta(minutes=3 if full else 2)
    holds.pause(lab.engine, EXTRACT, "reliability: pause-etl", "lab", until=until)
    time.sleep(max(0.0, (until - _db_now(lab)).total_seconds()))
    lab.wait(lambda: bool(_scheduled_extracts(lab, until)), 90, "a cycle after the until")
    resolved = [row.resolved_at for row in _incidents(lab, "paused")]
    ledger = _extract_slots(lab, began, until)
    alarms = _incidents(lab, "missed") + _incidents(lab, "late")
    late = (resolved[0] - until).total_seconds() if resolved and resolved[0] else None
    result.notes.append(
        f"slots during the pause: {[row.verdict for row in ledger]}; the pause ended "
        f"{late if late is None else round(late, 1)} s after its until"
    )
    if len(ledger) < 2 or any(row.verdict != "paused" for row in ledger):
        result.error = f"P1: the slots during the pause are not all paused: {ledger}"
    elif alarms:
        result.error = f"P1: a paused job raised incidents: {alarms}"
    elif late is None or not 0 <= late <= 2.5:
        result.error = f"P1: not resumed within one tick of its until ({late} s)"
    lab.cycles = len(_scheduled_extracts(lab))


def backfill_crash(lab: Lab, result: Result, full: bool) -> None:
    """B1, B2: a 7-day back-fill of aggregate+export (max-parallel 2) beside live traffic and
    ETL every minute; SIGKILL of the beat and of a worker holding an item, mid-way; every item
    ran once to completion, every chunk of the days has one new generation, the scheduled ETL
    cycles started within the grace, and no pool slot is left held."""
    from gim_tasks.db.calendar import fill_range, key_of
    from gim_tasks.jobs import export
    from gim_tasks.jobs.base import JobContext
    from gim_tasks.runtime import backfills
    from gim_tasks.schedule.backfill import Request
    from gim_tasks.schedule.jobs import BACKFILL

    today = datetime.now(UTC).date()
    days = [today - timedelta(days=n) for n in range(8, 1, -1)]  # 7 past days, oldest first
    with psycopg.connect(lab.idb_url, autocommit=True) as idb:
        for number, day in enumerate(days):
            start = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=9)
            generate(idb, start, 2 if full else 1, agents=40, queues=8, rate=2000,
                     seed=500 + number)  # fmt: skip
    with lab.engine.begin() as conn:  # DATE_TIME over the days (maintenance fills from today)
        fill_range(conn, "UTC", key_of(datetime.now(UTC) - timedelta(days=10)),
                   key_of(datetime.now(UTC)))  # fmt: skip
    lab.options(
        {
            ("gim-export", "start-date"): days[0].isoformat(),
            ("gim-export", "chunk-size-seconds"): "21600",
            ("quality", "discard-ratio"): "off",
            ("quality", "hour-rows"): "off",
        }
    )
    for job in (EXTRACT, TRANSFORM):
        lab.local(job, "setup")
    lab.local(AGGREGATE, "setup", once=True)
    with lab.engine.connect() as conn:
        options = store.load_options(conn)
    export.run(JobContext(mart=lab.engine, idb_urls=[], options=options,
                          output_base=Path(lab.env["GIM_OUTPUT_DIRECTORY"])))  # fmt: skip
    folder = lab.root / "export"
    first = {p.name for p in folder.glob("chunk-*")}
    _etl_every_minute(lab)
    lab.options({("schedule", "run-aggregates"): "false", ("schedule", "run-export"): "false"})
    lab.traffic(600)
    lab.worker("w1")
    lab.worker("w2")
    lab.beat("beat1")
    created = backfills.create(
        lab.engine,
        Request(days[0], days[-1], ("aggregate", "export"), "all", "oldest", 2, "reliability"),
        "lab",
    )
    backfill_id = int(created["id"])

    def done() -> int:
        return int(backfills.show(lab.engine, backfill_id)["done"])

    def running_item() -> sa.Row[Any] | None:
        with lab.engine.connect() as conn:
            return conn.execute(
                sa.select(job_run.c.id, job_run.c.worker).where(
                    job_run.c.job == BACKFILL, job_run.c.state == "Running"
                )
            ).first()

    lab.wait(lambda: done() >= 3, 240, "three items done")
    lab.signal("beat1", signal.SIGKILL)
    result.faults += 1
    lab.beat("beat1")
    lab.wait(lambda: running_item() is not None, 120, "an item running")
    item = running_item()
    victim = "w1" if item is not None and str(item.worker).startswith("w1-") else "w2"
    if item is not None and not str(item.worker).startswith(("w1-", "w2-")):
        victim = "w1"
    lab.signal(victim, signal.SIGKILL)
    result.faults += 1
    if item is not None and lab.run(item.id).state == "Running":
        result.faults_mid_run += 1
    lab.worker(victim)
    lab.wait(lambda: backfills.show(lab.engine, backfill_id)["state"] == "done", 600,
             "the back-fill done")  # fmt: skip
    shown = backfills.show(lab.engine, backfill_id)
    with lab.engine.connect() as conn:
        completed = conn.execute(
            sa.text(
                "SELECT split_part(firing_id, '#', 1) AS item, count(*) FROM job_run "
                "WHERE job = :job AND state IN ('Completed', 'Completed with warnings') "
                "GROUP BY 1"
            ),
            {"job": BACKFILL},
        ).all()
        attempts = conn.execute(
            sa.text("SELECT count(*) FROM job_run WHERE job = :job AND attempt > 1"),
            {"job": BACKFILL},
        ).scalar_one()
        lags = (
            conn.execute(
                sa.text(
                    "SELECT extract(epoch FROM started_at - planned_at) FROM job_run WHERE job = "
                    ":job AND trigger = 'scheduled' AND started_at IS NOT NULL "
                    "AND planned_at >= :since"  # slots of the back-fill's time (not a catch-up)
                ),
                {"job": EXTRACT, "since": datetime.fromisoformat(shown["created_at"])},
            )
            .scalars()
            .all()
        )
    grace = float(options.get("monitor", "grace-seconds"))
    chunks = {p.name: json.loads((p / "manifest.json").read_text()) for p in folder.glob("chunk-*")}
    owned = {export.chunk_name(s, e) for day in days for s, e in
             _chunks_of(day, options)}  # fmt: skip
    regenerated = [name for name in owned if chunks.get(name, {}).get("generation") == 2]
    result.notes.append(
        f"back-fill {backfill_id}: {shown['done']}/{shown['total']} items, {attempts} retried "
        f"attempt(s); {len(regenerated)}/{len(owned)} chunks at generation 2; ETL start lag "
        f"max {max(lags, default=0):.1f} s over {len(lags)} cycles"
    )
    if shown["done"] != shown["total"] or shown["total"] != 14:
        result.error = f"B1: items not all done: {shown['progress']}"
    elif sorted(n for _, n in completed) != [1] * 14:
        result.error = f"B1: an item completed more than once or never: {completed}"
    elif sorted(regenerated) != sorted(owned) or not owned <= first:
        result.error = f"B1: chunks not regenerated once: {sorted(owned - set(regenerated))}"
    elif list(folder.glob(".refill-*")):
        result.error = "B1: a re-export's hidden folder was left behind"
    elif any(lag > grace for lag in lags):
        result.error = f"B1: an ETL cycle started later than the grace ({grace} s): {lags}"
    lab.cycles = len(lags)
    result.notes.append("slots held at the end: checked after the drain")
    lab.after_measure = lambda: _no_slots(lab, result)


def _chunks_of(day: Any, options: Any) -> list[tuple[datetime, datetime]]:
    from gim_tasks.schedule.backfill import chunks_of_day

    size = int(options.get("gim-export", "chunk-size-seconds"))
    return chunks_of_day(day, "UTC", size, datetime.now(UTC))


def _no_slots(lab: Lab, result: Result) -> None:
    with lab.engine.connect() as conn:
        held = conn.execute(sa.text("SELECT count(*) FROM pool_slot")).scalar_one()
    if held and result.error is None:
        result.error = f"B2: {held} pool slot(s) still held after every run ended"


def redis_lost(lab: Lab, result: Result, full: bool) -> None:
    """Redis comes back empty (no persistence) while a run waits in its queue and ETL fires
    every minute: the queued message is gone; the run is sent again (S11), the RedBeat lock,
    entries and cursors are rebuilt, nothing fires twice."""
    import redis as redis_lib

    _etl_every_minute(lab)
    lab.traffic(600)
    lab.beat("beat1")
    lab.wait(lambda: len(_scheduled_extracts(lab)) >= 1, 90, "a scheduled ETL cycle")
    for _ in range(2 if full else 1):
        # No worker yet: its message waits in Redis (a forced statistics run: admitted now).
        admission = lab.request(UPDATE_STATS, force=True)
        if admission.state != "Running":
            raise RuntimeError(f"{UPDATE_STATS}: {admission.state} ({admission.reason})")
        client = redis_lib.Redis.from_url(lab.env["GIM_REDIS_URL"])
        try:
            client.flushdb()  # this lab's database: as if Redis restarted without its data
            lost_at = time.monotonic()
        finally:
            client.close()
        result.faults += 1
        lab.worker("w1")
        lab.wait(lambda: lab.run(admission.run_id).started_at is not None, 300,  # noqa: B023
                 "the lost message sent again")  # fmt: skip
        result.recovery.setdefault("resent", []).append(round(time.monotonic() - lost_at, 1))
        lab.wait_end(admission.run_id, 300)
        client = redis_lib.Redis.from_url(lab.env["GIM_REDIS_URL"])
        try:
            rebuilt = bool(client.keys("*gim-next:*"))  # the mirrored Next Run entries
        finally:
            client.close()
        if not rebuilt:
            result.error = "H1: the RedBeat entries were not written again after Redis came back"
        _stopped(lab, "w1")
    before = len(_scheduled_extracts(lab))
    lab.worker("w1")
    lab.wait(lambda: len(_scheduled_extracts(lab)) > before, 90, "the next cycle fires")
    lab.cycles = len(_scheduled_extracts(lab))


def _multi_host(lab: Lab, primary: PostgresServer, standby: PostgresServer, name: str) -> str:
    hosts = "&".join(f"host={s.host}:{s.port}" for s in (primary, standby))
    return f"postgresql://gim@/{name}?{hosts}&target_session_attrs=read-write"


def db_failover(lab: Lab, result: Result, full: bool) -> None:
    """Promote the synchronous standby while Extract runs, the primary stopped at once
    (immediate: as if its host died): every process reconnects through the multi-host URL
    (``target_session_attrs=read-write``); no committed run record or fact is lost, the run in
    flight is rerun, no fact twice. Each further round first rebuilds the old primary as the
    new primary's synchronous standby (``pg_basebackup``), then fails over back to it."""
    pair: tuple[PostgresServer, PostgresServer] = (lab.pg, lab.standby)
    url = _multi_host(lab, *pair, lab.mart_name)
    lab.env["GIM_DATABASE_URL"] = url
    lab.engine = make_engine(url)
    lab.settings = lab.settings.model_copy(update={"database_url": url})
    lab.beat("beat-a")
    lab.worker("worker-a")
    lab.worker("worker-b")
    lab.traffic(600)
    rng = random.Random(7)
    lab.cycle()
    rounds = 5 if full else 1
    for number in range(rounds):
        primary, standby = pair
        committed: list[int] = []

        def fail_over(
            run_id: int,
            primary: PostgresServer = primary,
            standby: PostgresServer = standby,
            committed: list[int] = committed,
            number: int = number,
        ) -> None:
            with lab.engine.connect() as conn:
                committed.extend(conn.execute(sa.text("SELECT id FROM job_run")).scalars())
            began = time.monotonic()
            primary.crash()
            standby.promote()
            promoted = time.monotonic()
            # The first commit of a gim process after the promotion (a run's heartbeat, a
            # claim, an end), found through the multi-host URL.
            probe = make_engine(url)

            def committed_since(at: datetime) -> bool:
                with probe.connect() as conn:
                    return bool(
                        conn.execute(
                            sa.text(
                                "SELECT count(*) FROM job_run WHERE greatest(heartbeat_at, "
                                "started_at, ended_at) > :at"
                            ),
                            {"at": at},
                        ).scalar_one()
                    )

            with probe.connect() as conn:
                at = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
            lab.wait(lambda: committed_since(at), 120, "a process commits on the new primary")
            probe.dispose()
            result.recovery.setdefault("db-failover", []).append(
                round(time.monotonic() - promoted, 1)
            )
            result.notes.append(
                f"round {number + 1}: {primary.host} stopped and {standby.host} promoted in "
                f"{promoted - began:.1f} s; run {run_id} was in flight"
            )

        run_id = _fault_during(lab, result, EXTRACT, fail_over, rng)
        # The new primary: the drain, the reference load, the fact comparison (plain libpq)
        # and a process the supervisor restarts go there.
        lab.pg = standby
        lab.env["GIM_DATABASE_URL"] = standby.url(lab.mart_name)
        if run_id is not None:
            lab.wait_end(run_id, 180)
        lab.cycle()
        with lab.engine.connect() as conn:
            kept = set(conn.execute(sa.text("SELECT id FROM job_run")).scalars())
        lost = sorted(set(committed) - kept)
        if lost:
            result.error = f"H1: committed run records lost in failover {number + 1}: {lost}"
            return
        if number + 1 < rounds:  # the old primary comes back as the new one's standby
            shutil.rmtree(primary.data_dir)
            primary.standby_of(standby)
            lab.standby = primary
            pair = (standby, primary)


# ----- partitions (issue 39, SPEC H1): hosts are network namespaces, faults cut links ------

NET_HOSTS = ("db", "redis", "beat-a", "beat-b", "worker-a", "worker-b")


def partition_worker_db(lab: Lab, result: Result, full: bool) -> None:
    """Cut worker-a from the database mid-Transform (packets dropped, no reset): its lease
    expires, worker-b reruns the run (L3 attempt 2); after the heal the old worker's writes
    are refused by the fencing token; facts equal the reference."""
    net = lab.net
    assert net is not None
    lab.options({("limits", "retries"): f"{TRANSFORM}=3", ("limits", "retry-delay-seconds"): "5"})
    lab.beat("beat-a")
    lab.traffic(600)
    for _ in range(5 if full else 1):
        lab.worker("worker-a", concurrency=1)  # alone: the Transform runs on it
        _prepare(lab, TRANSFORM)
        admission = lab.request(TRANSFORM)
        if admission.state != "Running":
            result.notes.append(f"{TRANSFORM}: {admission.state} ({admission.reason})")
            _stopped(lab, "worker-a", 30)
            continue
        lab.wait_running(admission.run_id)
        lab.worker("worker-b")
        time.sleep(random.uniform(0.05, 0.3))
        result.faults += 1
        if lab.run(admission.run_id).state == "Running":
            result.faults_mid_run += 1
        cut_at = _db_now(lab)
        net.cut("worker-a", "db")

        def rerun(first: int = admission.run_id) -> sa.Row[Any] | None:
            with lab.engine.connect() as conn:
                return conn.execute(
                    sa.select(job_run.c.id, job_run.c.started_at, job_run.c.worker).where(
                        job_run.c.retry_of == first, job_run.c.started_at.is_not(None)
                    )
                ).first()

        try:
            lab.wait(lambda: rerun() is not None, LEASE_SECONDS + 60, "the rerun starts")
        finally:
            net.heal("worker-a", "db")
        found = rerun()
        assert found is not None
        result.recovery.setdefault("lost-run", []).append(
            round((found.started_at - cut_at).total_seconds(), 1)
        )
        result.notes.append(f"run {admission.run_id} rerun as {found.id} by {found.worker}")
        lab.wait_end(found.id, 180)
        first = lab.run(admission.run_id)
        if first.state != "Failed" or "worker lost" not in (first.error or ""):
            result.error = f"H1: the cut-off run ended {first.state}: {first.error}"
        _stopped(lab, "worker-a", 30)
        _stopped(lab, "worker-b", 30)
        lab.cycles += 1


def _leader_pid(lab: Lab) -> int | None:
    import redis as redis_lib

    client = redis_lib.Redis.from_url(lab.env["GIM_REDIS_URL"])
    try:
        leader = client.hget("gim:beat", "leader")
    finally:
        client.close()
    if not leader:
        return None
    text = leader.decode() if isinstance(leader, bytes) else str(leader)
    return int(text.rsplit(":", 1)[1])


def _beat_named(lab: Lab, pid: int | None) -> str | None:
    for name in ("beat-a", "beat-b"):
        process = lab.group.children.get(name)
        if process is not None and process.process.pid == pid and process.process.poll() is None:
            return name
    return None


def _beat_failover(lab: Lab, result: Result, full: bool, peer: str) -> None:
    """Two beats, ETL every minute; the active one is cut from ``peer`` each round: the
    standby ticks (failover time: the cut to its first tick, H1) and fires the next slot;
    after the heal nothing fires twice (S11) and each slot has one verdict (O1)."""
    net = lab.net
    assert net is not None
    _etl_every_minute(lab)
    lab.traffic(600)
    lab.worker("worker-a")
    lab.beat("beat-a")
    lab.wait(lambda: _beat_named(lab, _leader_pid(lab)) == "beat-a", 60, "beat-a ticks")
    lab.beat("beat-b")
    time.sleep(3)
    for _ in range(5 if full else 1):
        active = _beat_named(lab, _leader_pid(lab))
        if active is None:
            raise RuntimeError("no beat is ticking")
        standby = "beat-b" if active == "beat-a" else "beat-a"
        began = time.monotonic()
        cut_at = _db_now(lab)
        net.cut(active, peer)
        result.faults += 1
        try:
            lab.wait(lambda: _beat_named(lab, _leader_pid(lab)) == standby, 90,  # noqa: B023
                     f"{standby} takes over")  # fmt: skip
            result.recovery.setdefault("beat-failover", []).append(
                round(time.monotonic() - began, 1)
            )
            lab.wait(lambda: bool(_scheduled_extracts(lab, cut_at)), 90,  # noqa: B023
                     "a cycle fired by the new leader")  # fmt: skip
        finally:
            net.heal(active, peer)
        time.sleep(12)  # the old leader resumes, finds its lease run out, becomes the standby
        lab.cycles = len(_scheduled_extracts(lab))
    with lab.engine.connect() as conn:
        twice = conn.execute(
            sa.text(
                "SELECT count(*) FROM (SELECT job, planned_at FROM firing GROUP BY 1, 2 "
                "HAVING count(*) > 1) d"
            )
        ).scalar_one()
    if twice:
        result.error = f"O1: {twice} slot(s) with more than one ledger row"


def partition_beat_redis(lab: Lab, result: Result, full: bool) -> None:
    """Cut the active beat from Redis: it stops deciding once its lock may have expired (its
    lease, H1); the standby takes the lock and fires the next slot; after the heal nothing
    fires twice (S11) and each slot has one verdict."""
    _beat_failover(lab, result, full, "redis")


def partition_beat_db(lab: Lab, result: Result, full: bool) -> None:
    """Cut the active beat from PostgreSQL but not Redis: it keeps its lock but cannot decide;
    it steps down (or its hung tick lets the lock expire, H1) and the standby fires the next
    slot; after the heal nothing fires twice (S11)."""
    _beat_failover(lab, result, full, "db")


QUIET_FACTS = (
    "agent_session_fact",
    "agent_state_fact",
    "agent_state_reason_fact",
    "campaign_attempt_fact",
)


def stale_data(lab: Lab, result: Result, full: bool) -> None:
    """Workers stopped past the freshness SLO with live traffic: one stale-data incident per
    stale category, resolved after recovery (O4)."""
    _etl_every_minute(lab)
    # The simulator writes calls only: the agent and campaign tables are left out (0 = not
    # judged), as an operator would for sources without live traffic.
    lab.options(
        {
            ("monitor", "freshness-slo-minutes"): "ETL=2, "
            + ", ".join(f"{table}=0" for table in QUIET_FACTS)
        }
    )
    lab.traffic(1200)
    lab.worker("w1")
    lab.beat("beat1")
    lab.start("watchdog", "watchdog", "--interval", "5")

    def fresh_facts() -> bool:
        with lab.engine.connect() as conn:
            newest = conn.execute(sa.text("SELECT gim_data_freshness()")).scalar_one()
        value = newest["facts"].get("interaction_fact")
        return value is not None and time.time() - float(value) < 90

    lab.wait(fresh_facts, 180, "live calls in the facts")
    if _incidents(lab, "stale-data"):
        result.error = f"stale-data while fresh: {_incidents(lab, 'stale-data')}"
        return
    _stopped(lab, "w1")
    lab.wait(
        lambda: any(row.resolved_at is None for row in _incidents(lab, "stale-data")),
        300,
        "a stale-data incident while the workers are down",
    )
    time.sleep(20)  # more watchdog passes: nothing doubles
    lab.worker("w1")
    lab.wait(
        lambda: all(row.resolved_at for row in _incidents(lab, "stale-data")),
        300,
        "the stale-data incident resolved after recovery",
    )
    incidents = _incidents(lab, "stale-data")
    result.notes.append(
        "stale-data incidents: "
        + "; ".join(
            f"{row.job}: {row.detail} ({row.opened_at:%H:%M:%S}-{row.resolved_at:%H:%M:%S})"
            for row in incidents
        )
    )
    if [row.job for row in incidents] != [TRANSFORM]:
        result.error = f"expected one stale-data incident for {TRANSFORM}: {incidents}"
    lab.cycles = len(_scheduled_extracts(lab))


#: In this order: the longest first (pause-etl waits minutes of wall time), so that it runs
#: beside the others on the second lane instead of after them.
SCENARIOS: dict[str, Scenario] = {
    "pause-etl": pause_etl,
    "sigkill-worker": sigkill_worker,
    "sigkill-worker-retries": sigkill_worker_retries,
    "sigstop-worker": sigstop_worker,
    "restart-redis": restart_redis,
    "restart-postgres": restart_postgres,
    "idb-restart": idb_restart,
    "extract-fanout-kill": extract_fanout_kill,
    "kill-active-beat": kill_active_beat,
    "stop-at-random-points": stop_at_random_points,
    "export-unwritable": export_unwritable,
    "clock-jump": clock_jump,
    "beat-down": beat_down,
    "stale-data": stale_data,
    "backfill-crash": backfill_crash,
    "redis-lost": redis_lost,
    "partition-worker-db": partition_worker_db,
    "partition-beat-redis": partition_beat_redis,
    "partition-beat-db": partition_beat_db,
    "db-failover": db_failover,
}
#: Scenarios on the network lab (root: network namespaces); their servers run on lab hosts.
NET_SCENARIOS = (
    "partition-worker-db",
    "partition-beat-redis",
    "partition-beat-db",
    "db-failover",
)
#: Scenarios only in the full run (minutes of downtime each: too long for CI's --quick).
FULL_ONLY = (
    "beat-down",
    "extract-fanout-kill",
    "redis-lost",
    "db-failover",
    "stale-data",
    "sigkill-worker-retries",
    "partition-beat-redis",
    "partition-beat-db",
)


@contextmanager
def servers(root: Path) -> Iterator[tuple[PostgresServer, RedisServer]]:
    pg = PostgresServer(root / "postgres", free_port(), fast=False)
    redis = RedisServer(root / "redis", free_port(), persistent=True)
    pg.start()
    redis.start()
    try:
        yield pg, redis
    finally:
        redis.stop()
        pg.stop()


def run(names: list[str], full: bool, say: Callable[[str], None], lanes: int = 2) -> list[Result]:
    """Run the scenarios, ``lanes`` at a time. Each lane has its own PostgreSQL and Redis
    servers (restart-postgres and restart-redis restart them), and takes the next scenario
    when its last one ends; results come back in the order of ``names``."""
    root = Path(tempfile.mkdtemp(prefix="gim-reliability-"))
    root.chmod(0o755)
    numbers = {name: number for number, name in enumerate(names, start=1)}
    todo, results, failures = list(names), {}, []
    lock = threading.Lock()

    finished = [threading.Event() for _ in range(max(1, min(lanes, len(names))))]

    def lane(index: int) -> None:
        try:
            with ExitStack() as stack:
                with lock:  # free ports are picked one lane at a time
                    pg, redis = stack.enter_context(servers(root / f"lane-{index}"))
                while True:
                    with lock:
                        if not todo:
                            return
                        name = todo.pop(0)
                    results[name] = _scenario(root, pg, redis, name, numbers[name], full, say)
        except Exception as error:  # servers that cannot start: reported after the join
            failures.append(error)
        finally:
            finished[index].set()

    threads = [
        threading.Thread(target=lane, args=(index,), name=f"lane-{index}")
        for index in range(len(finished))
    ]

    def wait_for_lanes(limit: float = float("inf")) -> None:
        # Events, not Thread.join: a join interrupted by Ctrl-C leaves the thread marked as
        # ended (CPython), and the process would exit in the middle of the lanes' cleanup.
        deadline = time.monotonic() + limit
        for done in finished:
            while not done.wait(0.5) and time.monotonic() < deadline:
                pass

    for thread in threads:
        thread.start()
    try:
        wait_for_lanes()
    except KeyboardInterrupt:
        # Ctrl-C reaches this thread only: the lanes must still tear their labs down (servers,
        # processes, network namespaces). Raise it in each lane too (delivered once a blocking
        # call returns; a terminal's Ctrl-C also ends the servers' client commands), then wait
        # for their cleanup before leaving.
        say("interrupted: stopping the scenarios and removing what they created")
        # A second Ctrl-C (or the one `timeout` or a shell relays) must not cut the cleanup.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for thread in threads:
            if thread.ident is not None and thread.is_alive():
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt)
                )
        wait_for_lanes(300)
        shutil.rmtree(root, ignore_errors=True)
        raise
    if failures:
        raise failures[0]
    ordered = [results[name] for name in names]
    if all(result.ok for result in ordered):
        shutil.rmtree(root, ignore_errors=True)  # servers' data, exports, logs: nothing kept
    else:
        say(f"logs of the scenarios kept in {root}")
    return ordered


def _scenario(
    root: Path,
    pg: PostgresServer,
    redis: RedisServer,
    name: str,
    number: int,
    full: bool,
    say: Callable[[str], None],
) -> Result:
    result = Result(name)
    started = time.monotonic()
    say(f"{name}: {SCENARIOS[name].__doc__.splitlines()[0]}")  # type: ignore[union-attr]
    try:
        if name in NET_SCENARIOS:
            _on_network(root, name, number, full, result)
        else:
            _on_loopback(root, pg, redis, name, number, full, result)
    except Exception as error:  # a lab that cannot start is a failure, reported
        result.error = result.error or f"{type(error).__name__}: {error}"
    result.seconds = round(time.monotonic() - started, 1)
    say(f"{name}: {'ok' if result.ok else 'FAILED'} in {result.seconds} s")
    return result


def _on_loopback(
    root: Path,
    pg: PostgresServer,
    redis: RedisServer,
    name: str,
    number: int,
    full: bool,
    result: Result,
    net: NetLab | None = None,
) -> None:
    # --quick (CI): half the base traffic; each fault still gets its own backlog.
    lab = Lab(root, pg, redis, name, number, hours=6 if full else 3)
    lab.net = net
    try:
        SCENARIOS[name](lab, result, full)
        lab.measure(result)
        lab.after_measure()
    except Exception as error:  # a scenario that cannot finish is a failure, reported
        result.error = f"{type(error).__name__}: {error}"
    finally:
        lab.close()


def _on_network(root: Path, name: str, number: int, full: bool, result: Result) -> None:
    """A partition scenario: its own PostgreSQL and Redis on lab hosts ``db`` and ``redis``,
    beats and workers on theirs; the suite reaches them all through its own link. db-failover
    adds a streaming standby on ``db2`` and puts the IDB on ``idb``."""
    failover = name == "db-failover"
    hosts = (*NET_HOSTS, "db2", "idb") if failover else NET_HOSTS
    with network(hosts) as net:
        base = root / f"net-{name}"
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)

        def server(host: str) -> PostgresServer:
            return PostgresServer(base / host, 5432, host=net.address(host),
                                  netns=net.namespace(host))  # fmt: skip

        pg = server("db")
        redis = RedisServer(base / "redis", 6379, persistent=True, host=net.address("redis"),
                            netns=net.namespace("redis"))  # fmt: skip
        servers = [pg]
        pg.start()
        redis.start()
        try:
            if not failover:
                _on_loopback(root, pg, redis, name, number, full, result, net)
                return
            idb, standby = server("idb"), server("db2")
            servers += [idb, standby]
            idb.start()
            lab = Lab(root, pg, redis, name, number, hours=6 if full else 3, idb_server=idb)
            lab.net = net
            try:
                standby.standby_of(pg)
                lab.standby = standby
                db_failover(lab, result, full)
                lab.measure(result)
            except Exception as error:
                result.error = f"{type(error).__name__}: {error}"
            finally:
                lab.close()
        finally:
            redis.stop()
            for each in servers:
                with suppress(Exception):
                    each.stop()


#: H1's published targets, by recovery kind (seconds; lost-run: the lease + 30 s).
RECOVERY_TARGETS = {
    "beat-failover": 15.0,
    "lost-run": LEASE_SECONDS + 30.0,
    "db-failover": 30.0,
    "resent": 15.0,  # the beat resends what was sent and not started once it sees Redis empty
    "lost-part": LEASE_SECONDS + 30.0,  # H2: the kill to the lost part's rerun starting
}


def recovery_lines(results: list[Result]) -> list[str]:
    """Recovery times per scenario and kind: p50 and p99 over the rounds, with the target."""
    lines = []
    for r in results:
        for kind, seconds in sorted(r.recovery.items()):
            ordered = sorted(seconds)
            p50 = ordered[len(ordered) // 2]
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            target = RECOVERY_TARGETS.get(kind, 0.0)
            verdict = "met" if p99 <= target else "MISSED"
            lines.append(
                f"{r.scenario}: {kind} p50 {p50:.1f} s, p99 {p99:.1f} s over {len(ordered)} "
                f"round(s) (target p99 <= {target:.0f} s: {verdict})"
            )
    return lines


def as_json(results: list[Result]) -> str:
    return json.dumps(
        {"scenarios": [{**asdict(r), "ok": r.ok} for r in results]}, indent=2, default=str
    )
