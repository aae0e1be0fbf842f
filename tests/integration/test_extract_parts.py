"""SPEC H2 on real PostgreSQL, Redis and Celery workers: one Extract run over three IDBs
spreads over the workers as parts (one per IDB), each claimed once, and stages exactly the
sources' rows; a stop of the run stops every part; a part lost with its SIGKILLed worker is
rerun alone (the others are not) and nothing is staged twice; a part message cannot start
anything (issue 39)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from conftest import Stack

from gim_tasks.db.engine import make_engine
from gim_tasks.idb.generator import generate
from gim_tasks.idb.schema import init_idb
from gim_tasks.jobs.extract import idb_name
from gim_tasks.lifecycle import RunState
from gim_tasks.runtime import parts, tasks
from gim_tasks.web import views

START = datetime(2026, 11, 23, tzinfo=UTC)
TRAFFIC = ("interaction", "party_segment", "agent_session", "agent_state", "campaign_attempt")


def source_rows(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TRAFFIC}  # type: ignore[index]


def staged_rows(engine: sa.Engine, url: str) -> dict[str, int]:
    with engine.connect() as conn:
        idb_id = conn.execute(
            sa.text("SELECT idb_id FROM idb_source WHERE name = :n"), {"n": idb_name(url)}
        ).scalar_one()
        return {
            t: conn.execute(
                sa.text(f"SELECT count(*) FROM stg_{t} WHERE idb_id = :i"), {"i": idb_id}
            ).scalar_one()
            for t in TRAFFIC
        }


class Fanned(Stack):
    def __init__(self, env: dict[str, str], tmp: Path, idbs: list[str]) -> None:
        super().__init__(env, tmp)
        self.idbs = idbs

    def extract(self) -> int:
        done = self.gim("run", "Job_ExtractICON")
        assert done.returncode == 0, done.stdout + done.stderr
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT max(id) FROM job_run WHERE job = 'Job_ExtractICON'")
                ).scalar_one()
            )

    def two_workers(self) -> None:
        """Two workers of one process each: parts run on both, one part per worker."""
        self.worker("w1", concurrency=1)
        self.worker("w2", concurrency=1)

    def slow_batches(self) -> None:
        """The smallest batches: a part takes seconds, long enough to act on it mid-way."""
        done = self.gim("config", "set", "gim-etl", "extract-batch-size", "100")
        assert done.returncode == 0, done.stderr

    def parts(self, run_id: int) -> list[sa.Row]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.text("SELECT * FROM extract_part WHERE run_id = :r ORDER BY position"),
                    {"r": run_id},
                )
            )

    def state(self, run_id: int) -> str:
        return str(self.runs(f"id = {run_id}")[0].state)

    def ended(self, run_id: int, limit: float = 120) -> str:
        self.wait(lambda: self.state(run_id) not in (RunState.RUNNING, RunState.SCHEDULED),
                  limit, f"run {run_id} to end")  # fmt: skip
        return self.state(run_id)


@pytest.fixture
def fanned(
    gim_env: dict[str, str],
    make_database: Callable[..., str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Fanned]:
    """Three IDBs of 8 hours of traffic; ``rate`` (indirect parameter) calls per hour."""
    rate = getattr(request, "param", 6000)
    idbs = []
    for seed in (1, 2, 3):
        url = make_database(migrated=False)
        init_idb(make_engine(url))
        with psycopg.connect(url, autocommit=True) as conn:
            generate(conn, START, 8, agents=30, queues=5, rate=rate, seed=seed)
        idbs.append(url)
    env = {
        **os.environ,
        **gim_env,
        "GIM_IDB_URLS": ",".join(idbs),
        "GIM_LOG_LEVEL": "INFO",
        # a small lease, so that a lost part is seen within seconds (R2)
        "GIM_LEASE_SECONDS": "6",
        "GIM_HEARTBEAT_SECONDS": "1",
    }
    running = Fanned(env, tmp_path, idbs)
    # small batches: a part commits often (its stop and fence are checked at each batch)
    assert running.gim("config", "set", "gim-etl", "extract-batch-size", "2000").returncode == 0
    try:
        yield running
    finally:
        running.stop()


def test_h2_one_extract_run_spreads_its_idbs_over_the_workers_as_parts(fanned: Fanned) -> None:
    fanned.two_workers()
    run_id = fanned.extract()
    assert fanned.ended(run_id) == RunState.COMPLETED
    rows = fanned.parts(run_id)
    assert [r.idb for r in rows] == [idb_name(u) for u in fanned.idbs]
    assert {r.state for r in rows} == {"completed"}
    assert [r.attempt for r in rows] == [1, 1, 1]  # each claimed once
    assert len({r.worker.rsplit(":", 1)[0] + r.worker for r in rows}) >= 2, rows  # spread
    run = fanned.runs(f"id = {run_id}")[0]
    assert run.rows_read == sum(r.rows_read for r in rows) > 0
    assert set(run.summary["rows_per_idb"]) == {idb_name(u) for u in fanned.idbs}
    for url in fanned.idbs:  # D1: exactly the sources' rows, once
        assert staged_rows(fanned.engine, url) == source_rows(url)
    # the run page and GET /api/runs/{id} list the parts
    shown = views.run_detail(fanned.engine, run_id)
    assert shown is not None
    assert [(p["idb"], p["state"]) for p in shown["parts"]] == [
        (idb_name(u), "completed") for u in fanned.idbs
    ]
    # S2 holds for the cycle: one Running Extract run the whole time, no run per part
    assert len(fanned.runs("job = 'Job_ExtractICON'")) == 1


#: Larger IDBs for acting on parts mid-way: a part then runs for several seconds.
LARGER = pytest.mark.parametrize("fanned", [40_000], indirect=True)


@LARGER
def test_h2_a_stop_of_the_run_stops_every_part(fanned: Fanned) -> None:
    fanned.slow_batches()
    fanned.two_workers()
    run_id = fanned.extract()
    fanned.wait(
        lambda: sum(r.state == "running" for r in fanned.parts(run_id)) >= 2,
        60,
        "two parts running",
    )
    asked = time.monotonic()
    stop = fanned.gim("stop", str(run_id))
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert fanned.ended(run_id, 30) == RunState.STOPPED
    took = time.monotonic() - asked
    rows = fanned.parts(run_id)
    assert not {r.state for r in rows} & {"scheduled", "running"}, rows
    assert "stopped" in {r.state for r in rows}
    assert took < 20, f"the parts took {took:.1f} s to stop"


@LARGER
def test_h2_a_part_lost_with_its_worker_is_rerun_alone(fanned: Fanned) -> None:
    fanned.slow_batches()
    fanned.two_workers()
    run_id = fanned.extract()
    coordinator = int(fanned.runs(f"id = {run_id}")[0].worker.rsplit(":", 1)[1])

    def victim() -> sa.Row | None:
        return next(
            (
                r
                for r in fanned.parts(run_id)
                if r.state == "running"
                and int(r.worker.rsplit(":", 1)[1]) != coordinator
                and r.rows_read > 0
            ),
            None,
        )

    fanned.wait(lambda: victim() is not None, 60, "a part running on the other worker")
    lost = victim()
    assert lost is not None
    fanned.group.signal(fanned.group.holding(int(lost.worker.rsplit(":", 1)[1])), signal.SIGKILL)
    assert fanned.ended(run_id, 120) == RunState.COMPLETED
    rows = {r.idb: r for r in fanned.parts(run_id)}
    assert rows[lost.idb].lost == 1 and rows[lost.idb].attempt == 2, rows[lost.idb]
    others = [r for idb, r in rows.items() if idb != lost.idb]
    assert [(r.attempt, r.lost) for r in others] == [(1, 0), (1, 0)]  # not rerun
    for url in fanned.idbs:  # nothing staged twice, nothing missed
        assert staged_rows(fanned.engine, url) == source_rows(url)


def test_h2_a_part_message_starts_nothing(fanned: Fanned) -> None:
    """A raw part message (celery call, Flower) can only claim a waiting part of a Running
    run: for an ended run, an unknown part or malformed arguments it does nothing."""
    with fanned.engine.begin() as conn:
        run_id = conn.execute(
            sa.text(
                "INSERT INTO job_run (job, trigger, state, actor, ended_at) VALUES "
                "('Job_ExtractICON', 'manual', 'Completed', 'test', now()) RETURNING id"
            )
        ).scalar_one()
        parts.plan(conn, run_id, [idb_name(fanned.idbs[0])])
    assert tasks.run_part(run_id, idb_name(fanned.idbs[0]))["state"] == "not claimable"
    assert tasks.run_part(run_id, "nowhere:5432/none")["state"] == "not claimable"
    assert fanned.parts(run_id)[0].state == "scheduled"  # untouched
    for bad in ({"run_id": "1", "idb": "x"}, {"run_id": run_id}, {"run_id": 1, "idb": "x", "y": 1}):
        assert tasks.part_task(**bad)["state"] == RunState.REJECTED


def test_h2_a_run_in_the_requesting_process_takes_every_part_itself(fanned: Fanned) -> None:
    """`gim run --local` (M0): no worker; the run records its parts the same way and runs
    them one after the other itself."""
    done = fanned.gim("run", "Job_ExtractICON", "--local")
    assert done.returncode == 0, done.stdout + done.stderr
    run = fanned.runs("job = 'Job_ExtractICON'")[-1]
    assert run.state == RunState.COMPLETED
    rows = fanned.parts(run.id)
    assert [(r.state, r.attempt) for r in rows] == [("completed", 1)] * 3
    assert {r.worker for r in rows} == {run.worker}
    for url in fanned.idbs:
        assert staged_rows(fanned.engine, url) == source_rows(url)


def test_h2_l3_a_run_whose_parts_failed_transiently_may_be_retried(
    gim_env: dict[str, str],
) -> None:
    """L3 through the parts: the coordinator fails the run naming the IDB, and marks it one a
    retry may cure only when every failed part's error may be cured (a lost IDB connection),
    not when one is a plain error."""
    from gim_tasks.jobs.base import JobContext
    from gim_tasks.options.values import Options
    from gim_tasks.runtime import runs

    engine = make_engine(gim_env["GIM_DATABASE_URL"])

    def attempt(failure: BaseException) -> tuple[JobContext, list[sa.Row]]:
        with engine.begin() as conn:
            run_id = conn.execute(
                sa.text(
                    "INSERT INTO job_run (job, trigger, state, actor) VALUES "
                    "('Job_ExtractICON', 'manual', 'Scheduled', 'test') RETURNING id"
                )
            ).scalar_one()
        token = runs.claim(engine, run_id, None)
        assert token is not None
        urls = ["postgresql://gim@127.0.0.1:1/good", "postgresql://gim@127.0.0.1:1/bad"]
        ctx = JobContext(mart=engine, idb_urls=urls, options=Options.defaults(), run_id=run_id,
                         fence=runs.fence_for(run_id, token))  # fmt: skip

        def body(part: JobContext, url: str) -> int:
            if url.endswith("/bad"):
                raise failure
            return 0

        with pytest.raises(parts.PartFailed, match="IDB 127.0.0.1:1/bad"):
            parts.coordinate(ctx, body, engine=engine, worker="test:1", send=None, lease=30,
                             heartbeat_seconds=1, names=idb_name)  # fmt: skip
        runs.finish_run(engine, run_id, RunState.FAILED, ctx.counts, token=token)
        with engine.connect() as conn:
            rows = list(
                conn.execute(
                    sa.text("SELECT idb, state, transient FROM extract_part WHERE run_id = :r "
                            "ORDER BY position"), {"r": run_id}
                )
            )  # fmt: skip
        return ctx, rows

    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    ctx, rows = attempt(lost)
    assert [(r.idb, r.state, r.transient) for r in rows] == [
        ("127.0.0.1:1/good", "completed", False),
        ("127.0.0.1:1/bad", "failed", True),
    ]
    assert ctx.transient
    ctx, rows = attempt(ValueError("a bug"))
    assert rows[1].state == "failed" and not rows[1].transient
    assert not ctx.transient
    engine.dispose()


def test_h2_idbs_are_numbered_in_their_configured_order_whichever_part_starts_first(
    fanned: Fanned,
) -> None:
    """idb_id (facts, discards, `gim etl status`, C2's "IDB n") follows GIM_IDB_URLS, as one
    IDB after the other would number them, though parts race to start: here the last IDB's
    part runs first."""
    from gim_tasks.jobs import extract
    from gim_tasks.jobs.base import JobContext
    from gim_tasks.options.values import Options

    def last_first(ctx: JobContext, body: parts.PartBody) -> None:
        for url in reversed(ctx.idb_urls):
            body(ctx, url)

    ctx = JobContext(mart=fanned.engine, idb_urls=fanned.idbs, options=Options.defaults(),
                     fan_out=last_first)  # fmt: skip
    extract.run(ctx)
    with fanned.engine.connect() as conn:
        numbered = conn.execute(sa.text("SELECT name FROM idb_source ORDER BY idb_id")).scalars()
        assert list(numbered) == [idb_name(u) for u in fanned.idbs]
