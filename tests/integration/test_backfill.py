"""SPEC B1, B2 on real PostgreSQL, Redis and files: a back-fill's dry run changes nothing; the
reprocess modes pick their days; D5 refuses purged days up front; items are runs started by
the beat through the gate, each once (firing id), rebuilding a day's aggregates and
re-exporting its chunks as a new generation; pause, resume and cancel leave nothing queued or
running; a pool slot follows its run and the R2 sweep frees a SIGKILLed worker's slot; a queued
ETL cycle goes before a waiting item (issue 35)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from beat_harness import Beat

from gim_tasks.aggregate.compute import ensure_tables, verify
from gim_tasks.aggregate.registry import HIERARCHIES
from gim_tasks.db.engine import make_engine
from gim_tasks.errors import Conflict, GimError
from gim_tasks.idb.generator import generate
from gim_tasks.idb.schema import init_idb
from gim_tasks.jobs import aggregate, export, extract, transform
from gim_tasks.jobs import backfill as backfill_job
from gim_tasks.jobs.base import JobContext
from gim_tasks.lifecycle import RunState
from gim_tasks.options import store
from gim_tasks.options.values import Options
from gim_tasks.runtime import backfills, manager, pools, runs
from gim_tasks.schedule.backfill import Request
from gim_tasks.schedule.jobs import BACKFILL, EXTRACT, MAINTAIN

TZ = "Europe/Berlin"
DAYS = [date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)]
START = datetime(2026, 11, 19, 23, 0, tzinfo=UTC)  # 2026-11-20 00:00 in Berlin
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
OPTIONS = {
    ("schedule", "timezone"): TZ,
    ("gim-export", "chunk-size-seconds"): "21600",
    ("gim-export", "start-date"): "2026-11-19",
}


class Mart:
    """Three local days of facts, aggregated and exported in 6-hour chunks."""

    def __init__(self, url: str, out: Path, beat: Beat) -> None:
        self.url, self.out, self.beat = url, out, beat
        self.engine = make_engine(url)
        for (section, name), value in OPTIONS.items():
            store.set_option(self.engine, section, name, value, "test")
        store.set_option(self.engine, "gim-export", "output-directory", str(out), "test")

    def options(self) -> Any:
        with self.engine.connect() as conn:
            return store.load_options(conn)

    def ctx(self, **more: Any) -> JobContext:
        return JobContext(
            mart=self.engine,
            idb_urls=[],
            options=self.options(),
            now=lambda: NOW,
            output_base=self.out.parent,
            **more,
        )

    def advance(self) -> list[int]:
        return backfills.advance(self.engine, self.beat.scheduler.app, NOW)

    def work(self, run_id: int) -> str:
        """Be the worker: claim the run and execute its body to its end."""
        token = runs.claim(self.engine, run_id, None)
        assert token is not None
        state, _, error = runs.run_claimed(
            self.engine, run_id, token, backfill_job.run, [], output_base=self.out.parent
        )
        return f"{state}: {error}" if error else state

    def until_done(self, backfill_id: int, limit: int = 20) -> list[int]:
        ran = []
        for _ in range(limit):
            started = self.advance()
            if not started and backfills.show(self.engine, backfill_id)["state"] == "done":
                return ran
            for run_id in started:
                assert self.work(run_id) == RunState.COMPLETED
                ran.append(run_id)
        raise AssertionError("the back-fill did not end")

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()

    def execute(self, sql: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(sql), params)


@pytest.fixture
def mart(make_database: Callable[..., str], gim_env: dict[str, str], tmp_path: Path) -> Mart:
    idb = make_database(migrated=False)
    init_idb(make_engine(idb))
    with psycopg.connect(idb, autocommit=True) as conn:
        generate(conn, START, 72, agents=10, queues=3, rate=120, seed=5)
    beat = Beat(gim_env)
    found = Mart(gim_env["GIM_DATABASE_URL"], tmp_path / "export", beat)
    plain = Options.from_texts(OPTIONS)
    for body in (extract.run, transform.run):
        body(JobContext(mart=found.engine, idb_urls=[idb], options=plain))
    aggregate.run(found.ctx(), once=True)
    export.run(found.ctx())
    return found


def request(**values: Any) -> Request:
    base: dict[str, Any] = {
        "first": DAYS[0],
        "last": DAYS[-1],
        "steps": ("aggregate", "export"),
        "reprocess": "all",
        "order": "oldest",
        "max_parallel": 1,
        "reason": "IDB outage 19-22 Nov",
    }
    return Request(**(base | values))


def manifests(out: Path) -> dict[str, dict[str, Any]]:
    return {
        folder.name: json.loads((folder / "manifest.json").read_text())
        for folder in sorted(out.glob("chunk-*"))
    }


def mismatches(mart: Mart) -> list[Any]:
    with mart.engine.begin() as conn:
        ensure_tables(conn)
        return [d for h in HIERARCHIES for d in verify(conn, h, DAYS[0], DAYS[-1])]


def test_b1_dry_run_lists_every_item_and_records_nothing(mart: Mart) -> None:
    found = backfills.create(mart.engine, request(), "ops", dry_run=True)
    assert found["id"] is None and found["state"] == "dry-run"
    assert [(i["day"], i["step"]) for i in found["items"]] == [
        (day.isoformat(), step) for day in DAYS for step in ("aggregate", "export")
    ]
    first_export = found["items"][1]["action"]
    assert "rewrite the 4 exported chunk(s) of 2026-11-20 as a new generation" == first_export
    assert "rebuild SUBHOUR to YEAR" in found["items"][0]["action"]
    assert found["estimate_seconds"] is None  # nothing measured yet: said, not invented
    assert mart.scalar("SELECT count(*) FROM backfill") == 0
    assert mart.scalar("SELECT count(*) FROM audit_event WHERE action LIKE 'backfill%'") == 0
    newest = backfills.create(mart.engine, request(order="newest"), "ops", dry_run=True)
    assert newest["items"][0]["day"] == DAYS[-1].isoformat()


def test_b1_reprocess_modes_pick_their_days(mart: Mart) -> None:
    table = HIERARCHIES[0].table("HOUR")
    mart.execute(
        f"DELETE FROM {table} WHERE bucket >= :a AND bucket < :b",
        a=datetime(2026, 11, 21),
        b=datetime(2026, 11, 22),
    )
    missing = backfills.create(
        mart.engine, request(steps=("aggregate",), reprocess="missing"), "ops", dry_run=True
    )
    assert [i["day"] for i in missing["items"]] == ["2026-11-21"]
    mart.execute(
        "INSERT INTO quality_check (name, subject, day, start_ts, end_ts, severity, passed, "
        "measured, bound, detail) VALUES ('aggregate-verify', 'all', '2026-11-22', :a, :b, "
        "'warn', false, '1', '0', 'x')",
        a=datetime(2026, 11, 21, 23, tzinfo=UTC),
        b=datetime(2026, 11, 22, 23, tzinfo=UTC),
    )
    failed = backfills.create(mart.engine, request(reprocess="failed"), "ops", dry_run=True)
    assert [(i["day"], i["step"]) for i in failed["items"]] == [("2026-11-22", "aggregate")]
    every = backfills.create(mart.engine, request(steps=("export",)), "ops", dry_run=True)
    assert len(every["items"]) == 3
    with pytest.raises(GimError, match="nothing to replay: reprocess=failed"):
        backfills.create(mart.engine, request(steps=("export",), reprocess="failed"), "ops")


def test_b1_d5_refuses_purged_days_up_front_naming_the_option(mart: Mart) -> None:
    mart.execute(
        "INSERT INTO purge_mark (what, purged_before) VALUES ('facts', :at)",
        at=datetime(2026, 11, 21, 12, tzinfo=UTC),
    )
    for dry_run in (True, False):
        with pytest.raises(GimError) as refused:
            backfills.create(mart.engine, request(), "ops", dry_run=dry_run)
        assert "back-fill 2026-11-20 to 2026-11-22" in str(refused.value)
        assert "days-to-keep-facts" in str(refused.value) and "(D5)" in str(refused.value)
    assert mart.scalar("SELECT count(*) FROM backfill") == 0


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"steps": ("aggregate", "reload")}, "unknown step 'reload'; allowed: aggregate, export"),
        ({"reprocess": "some"}, "allowed: missing, failed, all"),
        ({"order": "random"}, "allowed: oldest, newest"),
        ({"max_parallel": 0}, "allowed: 1 to 16"),
        ({"reason": " "}, "a reason is required"),
        ({"last": date(2099, 1, 1)}, "is not a past day"),
        ({"first": date(2026, 11, 23), "last": date(2026, 11, 22)}, "is after --to"),
    ],
)
def test_b1_bad_requests_name_what_is_allowed(
    mart: Mart, values: dict[str, Any], words: str
) -> None:
    with pytest.raises(GimError, match=words.replace("(", r"\(")):
        backfills.create(mart.engine, request(**values), "ops")
    assert mart.scalar("SELECT count(*) FROM backfill") == 0


def test_b1_items_are_runs_started_once_rebuilding_and_reexporting_as_a_new_generation(
    mart: Mart,
) -> None:
    before = manifests(mart.out)
    assert len(before) >= 12
    # Damage a day's aggregates: the back-fill repairs them.
    mart.execute(f"DELETE FROM {HIERARCHIES[1].table('SUBHOUR')}")
    assert mismatches(mart)
    created = backfills.create(mart.engine, request(), "ops")
    ran = mart.until_done(created["id"])
    assert len(ran) == 6
    assert mismatches(mart) == []
    rows = mart.scalar(
        "SELECT json_agg(json_build_object('f', firing_id, 't', trigger, 'a', actor)) "
        "FROM job_run WHERE job = :job",
        job=BACKFILL,
    )
    assert sorted(r["f"] for r in rows) == sorted(
        f"backfill:{created['id']}:{step}:{day}" for day in DAYS for step in ("aggregate", "export")
    )
    assert {(r["t"], r["a"]) for r in rows} == {("backfill", "ops")}
    after = manifests(mart.out)
    day_chunks = [name for name, m in after.items() if m.get("generation") == 2]
    assert len(day_chunks) == 12  # the chunks starting on the three days
    for name in day_chunks:
        new, old = after[name], before[name]
        assert new["replaces"]["generation"] == 1 and new["replaces"]["present"] is True
        assert new["replaces"]["run_id"] == old["run_id"]
        # The same data, file for file: a correction of nothing changes no row.
        assert {t: e["sha256"] for t, e in new["tables"].items()} == {
            t: e["sha256"] for t, e in old["tables"].items()
        }
    assert not list(mart.out.glob(".refill-*")) and not list(mart.out.glob(".partial-*"))
    # A later attempt of the same item (its worker lost after some exchanges) keeps what an
    # earlier attempt wrote: one generation per item; another item writes the next one.
    item = f"backfill:{created['id']}:export:{DAYS[0]}"
    again = mart.ctx(run_id=ran[1])
    backfill_job.export_day(again, DAYS[0], "all", item)
    assert len(again.counts.summary["kept"]) == 4 and again.counts.summary["chunks"] == []
    backfill_job.export_day(mart.ctx(run_id=ran[1]), DAYS[0], "all", "backfill:99:export:x")
    assert [m.get("generation") for m in manifests(mart.out).values()].count(3) == 4
    shown = backfills.show(mart.engine, created["id"])
    assert shown["state"] == "done" and shown["done"] == 6
    assert shown["progress"] == {
        "aggregate": {"items": 3, "done": 3},
        "export": {"items": 3, "done": 3},
    }
    # Measured now: a dry run estimates from the items just run.
    assert backfills.create(mart.engine, request(), "ops", dry_run=True)["estimate_seconds"] > 0
    assert mart.scalar("SELECT count(*) FROM pool_slot") == 0


def test_b1_pause_resume_cancel_leave_nothing_queued_or_running(mart: Mart) -> None:
    created = backfills.create(mart.engine, request(max_parallel=2), "ops")
    first = mart.advance()
    assert len(first) == 2  # max-parallel
    assert mart.advance() == []  # both places taken
    assert backfills.change(mart.engine, created["id"], "pause", "ops").endswith("paused")
    for run_id in first:
        assert mart.work(run_id) == RunState.COMPLETED  # running items finish
    assert mart.advance() == []  # paused: nothing new
    assert mart.scalar("SELECT count(*) FROM job_run WHERE state IN ('Scheduled', 'Running')") == 0
    with pytest.raises(Conflict, match="is paused; pause applies to a back-fill that is active"):
        backfills.change(mart.engine, created["id"], "pause", "ops")
    backfills.change(mart.engine, created["id"], "resume", "ops")
    resumed = mart.advance()
    assert len(resumed) == 2  # items 3 and 4: where it stopped
    positions = mart.scalar(
        "SELECT json_agg(position ORDER BY position) FROM backfill_item WHERE run_id = ANY(:ids)",
        ids=resumed,
    )
    assert positions == [3, 4]
    token = runs.claim(mart.engine, resumed[0], None)  # one running, one sent not started
    assert token is not None
    told = backfills.change(mart.engine, created["id"], "cancel", "ops")
    assert "stop asked of run(s)" in told
    with mart.engine.connect() as conn:
        states = dict(
            conn.execute(
                sa.text("SELECT id, state FROM job_run WHERE id = ANY(:ids)"), {"ids": resumed}
            ).all()
        )
        stop = conn.execute(
            sa.text("SELECT stop_kind, ended_by FROM job_run WHERE id = :id"), {"id": resumed[0]}
        ).one()
    assert states[resumed[1]] == RunState.CANCELLED
    assert tuple(stop) == ("operator", "ops")
    state, _, _ = runs.run_claimed(
        mart.engine, resumed[0], token, backfill_job.run, [], output_base=mart.out.parent
    )
    assert state == RunState.STOPPED
    assert mart.advance() == []
    assert mart.scalar("SELECT count(*) FROM job_run WHERE state IN ('Scheduled', 'Running')") == 0
    assert mart.scalar("SELECT count(*) FROM pool_slot") == 0
    audited = mart.scalar(
        "SELECT json_agg(action ORDER BY id) FROM audit_event WHERE action LIKE 'backfill%'"
    )
    assert audited == ["backfill-create", "backfill-pause", "backfill-resume", "backfill-cancel"]


def test_b1_items_wait_for_maintenance_and_a_queued_etl_cycle_goes_first(mart: Mart) -> None:
    created = backfills.create(mart.engine, request(), "ops")
    maintenance = mart.beat.run(MAINTAIN, "manual")
    assert mart.advance() == []
    waiting = backfills.show(mart.engine, created["id"])["waiting"]
    assert waiting == f"maintenance run {maintenance} is running: back-fill items wait for it (B1)"
    mart.beat.end(maintenance)
    cycle = mart.beat.run(EXTRACT, "scheduled", state="Scheduled")  # a cycle waiting (S1)
    assert mart.advance() == []
    assert (
        f"the ETL cycle waiting as run {cycle} goes first (B1)"
        == backfills.show(mart.engine, created["id"])["waiting"]
    )
    mart.beat.end(cycle, "Cancelled")
    assert len(mart.advance()) == 1
    assert backfills.show(mart.engine, created["id"])["waiting"] is None


def test_b2_items_leave_room_for_etl_and_a_full_pool_says_position_and_holders(
    mart: Mart,
) -> None:
    store.set_option(mart.engine, "pools", "heavy-db", "2", "test")
    created = backfills.create(mart.engine, request(max_parallel=4), "ops")
    started = mart.advance()
    assert len(started) == 1  # 2 slots, 1 kept for ETL (the heaviest job above back-fill)
    waiting = backfills.show(mart.engine, created["id"])["waiting"]
    assert waiting.startswith("waiting for 1 slot(s) of pool heavy-db: 1 of 2 held by ")
    assert f"{BACKFILL} run {started[0]}" in waiting and "1 kept for the jobs above" in waiting
    # ETL still gets its slot: a manual Extract is admitted while the item holds one.
    admitted = manager.request_run(mart.engine, EXTRACT, "ops", via=manager.Via.CLI)
    assert admitted.state == RunState.RUNNING
    assert mart.scalar("SELECT sum(weight) FROM pool_slot") == 2
    # The pool is full now: a second manual Extract waits... for S2 first (one run per job).
    with mart.engine.connect() as conn:
        assert pools.usage(conn) == {"held": 2, "free": 0, "waiting": 0}


def test_b2_a_slot_follows_its_run_and_the_r2_sweep_frees_a_killed_workers_slot(
    mart: Mart, gim_env: dict[str, str]
) -> None:
    admitted = manager.request_run(mart.engine, EXTRACT, "ops", via=manager.Via.CLI)
    run_id = admitted.run_id
    assert mart.scalar("SELECT fencing_token FROM pool_slot WHERE run_id = :r", r=run_id) is None
    # A worker process claims the run and heartbeats; then it is SIGKILLed.
    code = (
        "import sys, time\n"
        "from gim_tasks.db.engine import make_engine\n"
        "from gim_tasks.runtime import runs\n"
        "from gim_tasks.jobs.base import JobContext\n"
        "engine = make_engine(sys.argv[1])\n"
        "token = runs.claim(engine, int(sys.argv[2]), None)\n"
        "print(token, flush=True)\n"
        "time.sleep(600)\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", code, gim_env["GIM_DATABASE_URL"], str(run_id)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **gim_env},
    )
    try:
        token = int(worker.stdout.readline())  # type: ignore[union-attr]
        assert mart.scalar("SELECT fencing_token FROM pool_slot WHERE run_id = :r", r=run_id) == (
            token
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    time.sleep(1.2)
    assert runs.sweep_lost(mart.engine, lease=1) == [run_id]
    assert mart.scalar("SELECT state FROM job_run WHERE id = :r", r=run_id) == RunState.FAILED
    assert mart.scalar("SELECT count(*) FROM pool_slot") == 0
