"""Prometheus metrics (SPEC O5), read from PostgreSQL and Redis on every scrape, so every web
replica reports the same numbers and a restart loses nothing. Served by the web app at
``GET /metrics`` (any API token: ``Authorization: Bearer ...``, the viewer role).

Labels are bounded: ``job`` (six), ``category`` (five), ``outcome`` (three), ``verdict``
(six), ``table`` (fact tables and aggregate levels), ``queue`` (six), ``condition`` (six),
``leader`` (the beat's host:pid).

Cost: six statements, each answered by an index or a GROUP BY over ``job_run`` and
``firing`` (``bench metrics`` measures a scrape over 90 days of history), and one Redis
pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import redis
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy.engine import Engine

from gim_tasks.lifecycle import (
    CONDITIONS,
    FAILURE,
    OPERATOR_STOP,
    SUCCESS,
    VERDICTS,
    Retry,
    outcome,
)
from gim_tasks.monitor import mart_status
from gim_tasks.monitor.checks import CHECKS
from gim_tasks.options import store
from gim_tasks.runtime import pools
from gim_tasks.runtime.limits import load_history
from gim_tasks.runtime.queues import QUEUES
from gim_tasks.runtime.state import BEAT_KEY, heartbeat_of
from gim_tasks.schedule.jobs import JOB_NAMES, JOBS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

RUN_COUNTS = sa.text(
    "SELECT job, state, stop_kind, skip, retry, count(*) AS n, max(ended_at) AS last "
    "FROM job_run WHERE ended_at IS NOT NULL GROUP BY job, state, stop_kind, skip, retry"
)
# The newest finished run of each job (ix_job_run_job_created, backwards).
LAST_RUNS = sa.text(
    "SELECT j.job, r.started_at, r.ended_at FROM unnest(CAST(:jobs AS text[])) AS j(job) "
    "CROSS JOIN LATERAL (SELECT started_at, ended_at FROM job_run WHERE job = j.job "
    "AND started_at IS NOT NULL AND ended_at IS NOT NULL ORDER BY created_at DESC LIMIT 1) AS r"
)
# The newest decided firing of each job that started something (ix_firing_job_planned_at).
LAST_LAGS = sa.text(
    "SELECT j.job, f.lag_seconds FROM unnest(CAST(:jobs AS text[])) AS j(job) "
    "CROSS JOIN LATERAL (SELECT lag_seconds FROM firing WHERE job = j.job "
    "AND planned_at <= now() AND verdict IN ('on-time', 'late') "
    "ORDER BY planned_at DESC LIMIT 1) AS f"
)
FIRING_COUNTS = sa.text(
    "SELECT job, verdict, count(*) AS n FROM firing WHERE verdict IS NOT NULL GROUP BY job, verdict"
)
#: Q3: failing verdicts by check and whether they hold the export (error, not overridden).
FAILING_CHECKS = sa.text(
    "SELECT name, (severity = 'error' AND overridden_at IS NULL) AS holds, count(*) AS n "
    "FROM quality_check WHERE NOT passed GROUP BY 1, 2"
)
OPEN_INCIDENTS = sa.text(
    "SELECT condition, count(*) AS n FROM incident WHERE resolved_at IS NULL GROUP BY condition"
)


def families(engine: Engine, client: redis.Redis, now: datetime | None = None) -> list[Metric]:
    """Every metric family, read now."""
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        run_counts = conn.execute(RUN_COUNTS).all()
        history = load_history(conn)
        last_runs = conn.execute(LAST_RUNS, {"jobs": list(JOB_NAMES)}).all()
        lags = conn.execute(LAST_LAGS, {"jobs": list(JOB_NAMES)}).all()
        firing_counts = conn.execute(FIRING_COUNTS).all()
        incidents = dict(conn.execute(OPEN_INCIDENTS).tuples().all())
        freshness = mart_status.data_freshness(conn, now, store.load_options(conn))
        paused_jobs = set(conn.execute(sa.text("SELECT job FROM job_pause")).scalars())
        failing_checks = conn.execute(FAILING_CHECKS).all()
        held_chunks = conn.execute(
            sa.text("SELECT count(*) FROM export_hold WHERE released_at IS NULL")
        ).scalar_one()
        slots = pools.usage(conn)
    with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(BEAT_KEY)
        for name in QUEUES:
            pipe.llen(name)
        beat, *depths = pipe.execute()

    info = GaugeMetricFamily("gim_job_info", "A job and its category.", labels=["job", "category"])
    for spec in JOBS:
        info.add_metric([spec.name, spec.category], 1)
    last_success = GaugeMetricFamily(
        "gim_job_last_success_timestamp_seconds",
        "End of the job's newest successful run (R4), Unix time.",
        labels=["job"],
    )
    runs_total = CounterMetricFamily(
        "gim_job_runs",
        "Ended runs by outcome (R4); an attempt that was retried (or may be) is not one (L3).",
        labels=["job", "outcome"],
    )
    attempts_total = CounterMetricFamily(
        "gim_run_attempts",
        "Ended attempts by outcome (L3): success, failure, operator, or retried (a transient "
        "failure followed by another attempt) and pending (its retry not decided yet).",
        labels=["job", "outcome"],
    )
    counts: dict[tuple[str, str], int] = {
        (job, kind): 0 for job in JOB_NAMES for kind in (SUCCESS, FAILURE, OPERATOR_STOP)
    }
    attempts: dict[tuple[str, str], int] = {
        (job, kind): 0
        for job in JOB_NAMES
        for kind in (SUCCESS, FAILURE, OPERATOR_STOP, Retry.RETRIED, Retry.PENDING)
    }
    newest: dict[str, datetime] = {}
    for row in run_counts:
        kind = outcome(row.state, row.stop_kind, row.skip)
        if kind is None or row.job not in JOB_NAMES:
            continue
        if row.retry in (Retry.RETRIED, Retry.PENDING):
            attempts[(row.job, row.retry)] += row.n
            continue
        attempts[(row.job, kind)] += row.n
        counts[(row.job, kind)] += row.n
        if kind == SUCCESS and (row.job not in newest or row.last > newest[row.job]):
            newest[row.job] = row.last
    for job, at in sorted(newest.items()):
        last_success.add_metric([job], at.timestamp())
    for (job, kind), n in counts.items():
        runs_total.add_metric([job, kind], n)
    for (job, kind), n in attempts.items():
        attempts_total.add_metric([job, str(kind)], n)
    p95 = GaugeMetricFamily(
        "gim_job_duration_p95_seconds",
        "p95 duration of the job's last 30 successful runs (L2's yardstick).",
        labels=["job"],
    )
    for job, known in sorted(history.items()):
        if job in JOB_NAMES:
            p95.add_metric([job], known.p95_seconds)
    duration = GaugeMetricFamily(
        "gim_job_duration_seconds", "Duration of the job's newest finished run.", labels=["job"]
    )
    for row in last_runs:
        duration.add_metric([row.job], (row.ended_at - row.started_at).total_seconds())
    lag = GaugeMetricFamily(
        "gim_firing_start_lag_seconds",
        "Start lag of the job's newest firing that started a run (O1).",
        labels=["job"],
    )
    for row in lags:
        if row.lag_seconds is not None:
            lag.add_metric([row.job], row.lag_seconds)
    firings = CounterMetricFamily(
        "gim_firings", "Planned firings by verdict (O1).", labels=["job", "verdict"]
    )
    by_verdict = {(row.job, row.verdict): row.n for row in firing_counts}
    for job in sorted({row.job for row in firing_counts}):
        for verdict in VERDICTS:
            firings.add_metric([job, verdict], by_verdict.get((job, verdict), 0))
    age = GaugeMetricFamily(
        "gim_data_age_seconds",
        "Age of the newest data per fact table and aggregate level (O4).",
        labels=["category", "table"],
    )
    for item in freshness:
        if item["age_seconds"] is not None:
            age.add_metric([item["category"], item["table"]], item["age_seconds"])
    queue = GaugeMetricFamily("gim_queue_depth", "Messages waiting per queue.", labels=["queue"])
    for name, depth in zip(QUEUES, depths, strict=True):
        queue.add_metric([name], depth)
    last_tick, beat_leader = heartbeat_of(beat)
    tick = GaugeMetricFamily(
        "gim_beat_last_tick_timestamp_seconds", "The beat's last tick, Unix time (O2)."
    )
    leader = GaugeMetricFamily(
        "gim_beat_leader", "The beat that ticked last (host:pid).", labels=["leader"]
    )
    if last_tick is not None:
        tick.add_metric([], last_tick)
        leader.add_metric([beat_leader or ""], 1)
    open_incidents = GaugeMetricFamily(
        "gim_open_incidents", "Open incidents by condition (O3).", labels=["condition"]
    )
    for condition in CONDITIONS:
        open_incidents.add_metric([condition], incidents.get(condition, 0))
    paused = GaugeMetricFamily(
        "gim_job_paused",
        "1 while the job's scheduled firings are paused, by its own pause or a global one (P1).",
        labels=["job"],
    )
    for spec in JOBS:
        paused.add_metric([spec.name], int(bool({spec.name, "*"} & paused_jobs)))
    failing = GaugeMetricFamily(
        "gim_quality_checks_failing",
        "Failing quality-check verdicts (Q3) by check; holds=true: error and not overridden, "
        "so they hold the export of what they cover.",
        labels=["check", "holds"],
    )
    found = {(row.name, bool(row.holds)): row.n for row in failing_checks}
    for check in CHECKS:
        for holds in (True, False):
            failing.add_metric([check, str(holds).lower()], found.get((check, holds), 0))
    held = GaugeMetricFamily(
        "gim_export_held_chunks", "Export chunks held by a failing quality check (Q3)."
    )
    held.add_metric([], held_chunks)
    pool = GaugeMetricFamily(
        "gim_pool_slots",
        "Slots of the database pool (B2): held by runs, free, and wanted by runs waiting.",
        labels=["pool", "state"],
    )
    for state, count in slots.items():
        pool.add_metric([pools.POOL, state], count)
    return [
        pool,
        failing,
        held,
        paused,
        info,
        last_success,
        runs_total,
        attempts_total,
        duration,
        p95,
        lag,
        firings,
        age,
        queue,
        tick,
        leader,
        open_incidents,
    ]


class _Scrape:
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics


def exposition(engine: Engine, client: redis.Redis, now: datetime | None = None) -> bytes:
    """The Prometheus text exposition of :func:`families`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape(families(engine, client, now)))
    return generate_latest(registry)
