"""Several IDBs end to end (SPEC D1, C2; issue "Data safety and scale" part 2).

Real sites run several IDBs (voice, multimedia, outbound). Three IDBs of different sizes and
shapes, each numbering its rows from 1, so source ids collide between them: the facts keep them
apart by ``idb_id``. D1 holds per IDB with out-of-order writers in all three at once; an IDB
that goes away blocks new runs (C2) naming it, and after it returns nothing is lost or doubled;
``gim etl status`` shows each IDB.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa

from gim_tasks.cli.main import main as gim
from gim_tasks.db import mart_tables as mart
from gim_tasks.db.engine import make_engine
from gim_tasks.idb.generator import generate
from gim_tasks.idb.schema import init_idb
from gim_tasks.idb.simulate import simulate
from gim_tasks.jobs import extract, transform
from gim_tasks.jobs.base import JobContext
from gim_tasks.options.values import Options
from gim_tasks.settings import get_settings

#: Three sites: a large voice site, a small one, one with many queues and few agents. Backlog
#: (hours of generated traffic) and live writers (calls per hour, concurrent writers) differ.
SHAPES = [
    {"agents": 60, "queues": 6, "rate": 1500, "hours": 3, "live": 30000, "writers": 4},
    {"agents": 5, "queues": 2, "rate": 120, "hours": 1, "live": 4000, "writers": 1},
    {"agents": 12, "queues": 15, "rate": 600, "hours": 2, "live": 12000, "writers": 3},
]
START = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0) - timedelta(days=2)
OPTIONS = Options.from_texts(
    {("gim-etl", "extract-batch-size"): "200", ("gim-etl", "parallel-tables"): "2"}
)


@pytest.fixture
def idbs(make_database: Callable[..., str]) -> list[str]:
    urls = []
    for number, shape in enumerate(SHAPES, start=1):
        url = make_database(migrated=False)
        init_idb(make_engine(url))
        with psycopg.connect(url, autocommit=True) as conn:
            generate(
                conn,
                START + timedelta(hours=number),
                shape["hours"],
                agents=shape["agents"],
                queues=shape["queues"],
                rate=shape["rate"],
                seed=number,
            )
        urls.append(url)
    return urls


def cycle(mart_url: str, idb_urls: list[str]) -> None:
    engine = make_engine(mart_url)
    for body in (extract.run, transform.run):
        body(JobContext(mart=engine, idb_urls=idb_urls, options=OPTIONS))
    engine.dispose()


def facts(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every fact row with its IDB's name in place of the mart-local idb_id, sorted."""
    result = {}
    with make_engine(url).connect() as conn:
        names = {row.idb_id: row.name for row in conn.execute(sa.select(mart.idb_source))}
        for table in mart.FACTS:
            columns = [c for c in table.columns if c.name != "run_id"]
            rows = conn.execute(sa.select(*columns)).all()
            result[table.name] = sorted((names[r[0]], *r[1:]) for r in rows)
    return result


def source_segments(url: str) -> set[int]:
    """The party segment ids of one IDB."""
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM party_segment")}


def loaded_per_idb(mart_url: str) -> dict[str, int]:
    """Per IDB name: segment facts plus segments discarded with a reason (R3)."""
    with make_engine(mart_url).connect() as conn:
        return {
            row.name: row.loaded
            for row in conn.execute(
                sa.text(
                    "SELECT s.name, (SELECT count(*) FROM interaction_segment_fact f WHERE "
                    "f.idb_id = s.idb_id) + (SELECT count(*) FROM discard d WHERE d.idb_id = "
                    "s.idb_id AND d.source_table = 'interaction_segment_fact') AS loaded "
                    "FROM idb_source s"
                )
            )
        }


def assert_each_idb_loaded_once(mart_url: str, idb_urls: list[str]) -> None:
    loaded = loaded_per_idb(mart_url)
    assert len(loaded) == len(idb_urls)
    all_ids = []
    for url in idb_urls:
        ids = source_segments(url)
        all_ids.append(ids)
        assert loaded[extract.idb_name(url)] == len(ids), url  # none lost, none doubled
    # Source ids collide between IDBs (each numbers from 1): kept apart by idb_id.
    assert all_ids[0] & all_ids[1] & all_ids[2]


def test_d1_three_idbs_with_out_of_order_writers_in_all_at_once(
    idbs: list[str], database_url: str, make_database: Callable[..., str]
) -> None:
    stop = threading.Event()
    writers = [
        threading.Thread(
            target=simulate,
            kwargs={
                "url": url,
                "rate_per_hour": shape["live"],
                "writers": shape["writers"],
                "stop": stop,
                "call_seconds": 1,
                "seed": 10 + number,
            },
        )
        for number, (url, shape) in enumerate(zip(idbs, SHAPES, strict=True))
    ]
    for writer in writers:
        writer.start()
    cycles = 0
    deadline = time.monotonic() + 6
    try:
        # At least three cycles and six seconds of writing, however slow the machine.
        while cycles < 3 or time.monotonic() < deadline:
            cycle(database_url, idbs)
            cycles += 1
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    cycle(database_url, idbs)  # the final cycle after the writers stopped
    live = [len(source_segments(url)) for url in idbs]
    reference = make_database()
    cycle(reference, idbs)  # one clean pass over the same three sources
    assert facts(database_url) == facts(reference)
    assert_each_idb_loaded_once(database_url, idbs)
    assert all(count > 0 for count in live)


def set_reachable(url: str, reachable: bool) -> None:
    """Take an IDB away (no new connections, existing ones cut) or give it back, as a server
    restart or a network cut would, from the IDB's own server."""
    database = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {str(reachable).lower()}')
        if not reachable:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )


@pytest.mark.date_sensitive
def test_c2_an_idb_down_blocks_new_runs_and_after_it_returns_nothing_is_lost_or_doubled(
    idbs: list[str],
    gim_env: dict[str, str],
    make_database: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GIM_IDB_URLS", ",".join(idbs))
    get_settings.cache_clear()
    mart_url = gim_env["GIM_DATABASE_URL"]
    for job in ("Job_ExtractICON", "Job_TransformGIM"):
        assert gim(["run", job, "--local"]) == 0
    capsys.readouterr()
    assert gim(["etl", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    shown = {i["idb"]: i for i in status["idbs"]}
    assert list(shown) == [extract.idb_name(url) for url in idbs]  # in registration order
    loaded = loaded_per_idb(mart_url)
    for name, idb in shown.items():
        assert idb["segment_facts"] + idb["segment_discards"] == loaded[name] > 0
        assert idb["tables"] == len(mart.STAGING) and not idb["in_progress"]
    set_reachable(idbs[1], False)
    try:
        with psycopg.connect(idbs[0], autocommit=True) as conn:  # the others keep taking calls
            generate(conn, START + timedelta(hours=8), 1, agents=20, queues=3, rate=400, seed=21)
        for job in ("Job_ExtractICON", "Job_TransformGIM", "Job_AggregateGIM"):
            assert gim(["run", job, "--local"]) == 1
            out = capsys.readouterr().out
            assert "Rejected: configuration check failed" in out and "IDB 2" in out, out
        with make_engine(mart_url).connect() as conn:
            rejected = conn.execute(
                sa.text("SELECT count(*) FROM job_run WHERE state = 'Rejected'")
            ).scalar_one()
        assert rejected == 3
    finally:
        set_reachable(idbs[1], True)
    with psycopg.connect(idbs[1], autocommit=True) as conn:  # traffic after it returned
        generate(conn, START + timedelta(hours=9), 1, agents=5, queues=2, rate=300, seed=22)
    for job in ("Job_ExtractICON", "Job_TransformGIM"):
        assert gim(["run", job, "--local"]) == 0
    reference = make_database()
    cycle(reference, idbs)
    assert facts(mart_url) == facts(reference)
    assert_each_idb_loaded_once(mart_url, idbs)


@pytest.mark.date_sensitive
def test_etl_and_aggregation_status_per_idb_alike_in_cli_api_and_pages_as_the_web_role(
    idbs: list[str],
    gim_env: dict[str, str],
    web_role_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 18 item 5 / issue 17 part 2: what `gim etl status` shows (per IDB rows waiting for
    Transform, facts, discards) the web role's API and page show too, though the web role reads
    no staging or fact row; the aggregation status lists a queued re-aggregation request."""
    from fastapi.testclient import TestClient

    from gim_tasks.runtime import manager
    from gim_tasks.web import auth
    from gim_tasks.web.app import create_app

    monkeypatch.setenv("GIM_IDB_URLS", ",".join(idbs))
    get_settings.cache_clear()
    owner = make_engine(gim_env["GIM_DATABASE_URL"])
    auth.add_user(owner, "viewer", "viewer", "correct horse 1", "test")
    web = make_engine(web_role_url)
    client = TestClient(create_app(get_settings(), web))
    headers = {"Authorization": f"Bearer {auth.create_token(owner, 'viewer', actor='test')}"}

    def cli(*args: str) -> dict[str, object]:
        capsys.readouterr()
        assert gim([*args, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    assert gim(["run", "Job_ExtractICON", "--local"]) == 0
    status = cli("etl", "status")
    assert client.get("/api/etl/status", headers=headers).json() == status
    staged = {}
    with owner.connect() as conn:
        for row in conn.execute(
            sa.text(
                "SELECT s.name, (SELECT count(*) FROM stg_party_segment p WHERE p.idb_id = "
                "s.idb_id) AS n FROM idb_source s"
            )
        ):
            staged[row.name] = row.n
    shown = {i["idb"]: i for i in status["idbs"]}  # type: ignore[union-attr]
    assert list(shown) == [extract.idb_name(url) for url in idbs]
    for name, idb in shown.items():
        assert idb["pending_transform"] > staged[name] > 0  # segments and the other tables
        assert idb["segment_facts"] == 0
    segment_marks = [m for m in status["marks"] if m["table"] == "party_segment"]  # type: ignore[union-attr]
    assert [m["pending_transform"] for m in segment_marks] == [staged[n] for n in shown]
    page = client.get("/etl", headers=headers)
    assert page.status_code == 200
    for name, idb in shown.items():
        assert f'data-idb="{name}"' in page.text
        assert f'<td class="num pending">{idb["pending_transform"]:,}</td>' in page.text

    assert gim(["run", "Job_TransformGIM", "--local"]) == 0
    status = cli("etl", "status")
    assert client.get("/api/etl/status", headers=headers).json() == status
    assert status["pending_transform"] == 0
    loaded = loaded_per_idb(gim_env["GIM_DATABASE_URL"])
    for idb in status["idbs"]:  # type: ignore[union-attr]
        assert idb["pending_transform"] == 0
        assert idb["segment_facts"] + idb["segment_discards"] == loaded[idb["idb"]] > 0
    assert [r["job"] for r in status["last_runs"]] == ["Job_TransformGIM", "Job_ExtractICON"]  # type: ignore[union-attr]

    before = cli("aggregate", "status")
    assert before["pending_intervals"] > 0 and set(before["freshness"].values()) == {None}  # type: ignore[union-attr]
    day = START.date().isoformat()
    queued = manager.request_run(
        web, "Job_AggregateGIM", "viewer", {"params": f"-insertPendingAgg ALLSETS:{day}:{day}"}
    )
    assert "re-aggregation request" in (queued.reason or "")
    status = cli("aggregate", "status")
    assert client.get("/api/aggregate/status", headers=headers).json() == status
    assert status["queued_requests"] == 1 and status["requests"][0]["requested_by"] == "viewer"  # type: ignore[index]
    page = client.get("/aggregation", headers=headers).text
    assert f"SUBHOUR {day} to {day}" in page
    manager.cancel_run(owner, queued.run_id, "test")
    assert gim(["aggregate", "once"]) == 0
    status = cli("aggregate", "status")
    assert status["pending_intervals"] == 0 and status["queued_requests"] == 0
    assert all(status["freshness"].values())  # type: ignore[union-attr]
    assert client.get("/api/aggregate/status", headers=headers).json() == status
    web.dispose()
    owner.dispose()
