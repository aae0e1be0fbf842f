"""SPEC Q1, Q2 on real PostgreSQL and Redis with an injected clock: the watchdog judges data
days from the mart's marks (facts, the aggregation queue), with no run at all: at risk before
ready-by, a deadline incident after it, a hole behind a complete day, resolved when the
aggregation catches up; the grid alike in `gim days`, the API and the Days page (issue 37)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import redis
import sqlalchemy as sa
from beat_harness import Beat
from fastapi.testclient import TestClient

from gim_tasks.cli.main import main as gim
from gim_tasks.db.partitions import ensure_partitions
from gim_tasks.monitor import days, watchdog
from gim_tasks.options import store
from gim_tasks.schedule.jobs import EXTRACT, TRANSFORM
from gim_tasks.schedule.localtime import resolve, zone
from gim_tasks.settings import get_settings
from gim_tasks.web import auth
from gim_tasks.web.app import create_app

TZ = zone("Europe/Berlin")


def local(text: str) -> datetime:
    return resolve(datetime.fromisoformat(text), TZ).astimezone(UTC)


def test_q1_q2_deadline_at_risk_then_missed_a_hole_and_both_resolved(
    gim_env: dict[str, str], capsys: object
) -> None:
    beat = Beat(gim_env)  # the schedule's zone: Europe/Berlin
    engine = beat.engine
    client = redis.Redis.from_url(gim_env["GIM_REDIS_URL"])
    client.hset("gim:beat", mapping={"tick": time.time()})
    store.set_option(engine, "schedule", "run-scheduler", "false", "test")  # no slot to wait for
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO scheduler_epoch (first_tick_at) VALUES (:t)"),
                     {"t": local("2026-11-20T00:00")})  # fmt: skip
        for n in range(10):  # ETL history: Extract and Transform take 15 minutes each (p95)
            for job in (EXTRACT, TRANSFORM):
                conn.execute(
                    sa.text(
                        "INSERT INTO job_run (job, trigger, actor, state, started_at, ended_at)"
                        " VALUES (:j, 'scheduled', 's', 'Completed', :s, :e)"
                    ),
                    {"j": job, "s": local(f"2026-11-{10 + n}T01:00"),
                     "e": local(f"2026-11-{10 + n}T01:15")},
                )  # fmt: skip

    def fact(row_id: int, start: datetime) -> None:
        with engine.begin() as conn:
            ensure_partitions(conn, "interaction_fact", [start.date()])
            conn.execute(
                sa.text(
                    "INSERT INTO interaction_fact (idb_id, interaction_id, start_ts, "
                    "date_time_key) VALUES (1, :i, :s, :k)"
                ),
                {"i": row_id, "s": start, "k": int(start.timestamp()) // 900 * 900},
            )

    def queue(at: datetime) -> None:  # facts changed in this interval: aggregation owed
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO agg_pending VALUES ('interaction_fact', :k)"),
                {"k": int(at.timestamp()) // 900 * 900},
            )

    def opened() -> list[tuple[str, str]]:
        with engine.connect() as conn:
            return [
                tuple(row)
                for row in conn.execute(
                    sa.text(
                        "SELECT condition, job FROM incident WHERE resolved_at IS NULL "
                        "ORDER BY condition, job"
                    )
                )
            ]

    def check(at: str) -> list[str]:
        return watchdog.check(engine, client, get_settings(), local(at)).days

    fact(1, local("2026-11-22T10:00"))
    fact(2, local("2026-11-24T00:10"))  # past the end of the 23rd: the facts are in
    queue(local("2026-11-23T18:00"))  # the 23rd's aggregation still owed
    assert check("2026-11-24T06:00") == []  # 30 min of work left, an hour to go
    assert check("2026-11-24T06:40") == ["deadline-at-risk: 2026-11-23"]
    assert opened() == [("deadline-at-risk", "data day 2026-11-23")]
    assert check("2026-11-24T07:00:15") == ["deadline: 2026-11-23"]
    assert opened() == [("deadline", "data day 2026-11-23")]  # at risk gave way to deadline
    # The 22nd is complete, the 23rd not; now the 22nd gets a late re-aggregation too and the
    # 23rd catches up: the 22nd is a hole behind a complete day.
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM agg_pending"))
    queue(local("2026-11-22T09:00"))
    found = check("2026-11-24T08:00")
    assert found == ["deadline: 2026-11-22", "incomplete-day: 2026-11-22"]
    assert opened() == [
        ("deadline", "data day 2026-11-22"),
        ("incomplete-day", "data day 2026-11-22"),
    ]
    # The grid says so, and the CLI, the API and the Days page show the same grid.
    grid = days.listing(engine, 3, now=local("2026-11-24T08:00"))
    cells = {d["day"]: (d["complete"], d["cells"]["aggregation"]) for d in grid["days"]}
    assert cells == {
        "2026-11-24": (False, "pending"),  # its facts are not in yet (the day is young)
        "2026-11-23": (True, "complete"),
        "2026-11-22": (False, "pending"),
    }
    assert gim(["days", "--days", "3", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)  # type: ignore[attr-defined]
    auth.add_user(engine, "vera", "viewer", "password-vera", "test")
    token = auth.create_token(engine, "vera", actor="test")
    client_api = TestClient(create_app(get_settings(), engine), base_url="http://testserver")
    client_api.headers["Authorization"] = f"Bearer {token}"
    assert client_api.get("/api/days", params={"days": 3}).json() == shown
    assert shown["stages"][-1] == "aggregation" and "interaction_fact" in shown["stages"]
    assert {
        c
        for d in shown["days"]
        for s, c in d["cells"].items()
        if s != "interaction_fact" and s != "aggregation"
    } <= {"n/a"}  # tables without a row are not judged
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM agg_pending"))
    assert check("2026-11-24T08:05") == []
    assert opened() == []


def test_q2_a_deleted_level_of_one_hierarchy_is_missing_and_a_hole_until_rebuilt(
    gim_env: dict[str, str],
) -> None:
    """The marks say the 22nd is aggregated, the data disagrees: one hierarchy's HOUR rows of
    the day are gone. The grid says `missing` (its drill-down names the level), the watchdog
    opens incomplete-day behind the complete 23rd within one pass; a re-aggregation of the
    day resolves it."""
    from gim_tasks.db import calendar
    from gim_tasks.jobs import aggregate
    from gim_tasks.jobs.base import JobContext

    beat = Beat(gim_env)
    engine = beat.engine
    client = redis.Redis.from_url(gim_env["GIM_REDIS_URL"])
    client.hset("gim:beat", mapping={"tick": time.time()})
    store.set_option(engine, "schedule", "run-scheduler", "false", "test")
    first, last = local("2026-11-21T00:00"), local("2026-11-25T00:00")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO scheduler_epoch (first_tick_at) VALUES (:t)"),
                     {"t": local("2026-11-20T00:00")})  # fmt: skip
        calendar.fill_range(conn, "Europe/Berlin", calendar.key_of(first), calendar.key_of(last))
    instants = [local(t) for t in ("2026-11-22T10:00", "2026-11-23T10:00", "2026-11-24T00:10")]
    with engine.begin() as conn:
        ensure_partitions(conn, "interaction_fact", [i.date() for i in instants])
        for n, at in enumerate(instants, start=1):
            key = calendar.key_of(at)
            conn.execute(
                sa.text(
                    "INSERT INTO interaction_fact (idb_id, interaction_id, start_ts, "
                    "date_time_key, direction, status) VALUES (1, :i, :s, :k, 'inbound', "
                    "'completed')"
                ),
                {"i": n, "s": at, "k": key},
            )
            conn.execute(sa.text("INSERT INTO agg_pending VALUES ('interaction_fact', :k)"),
                         {"k": key})  # fmt: skip

    def aggregate_pending() -> None:
        with engine.connect() as conn:
            options = store.load_options(conn)
        aggregate.run_once(JobContext(mart=engine, idb_urls=[], options=options))

    def check(at: str) -> list[str]:
        return watchdog.check(engine, client, get_settings(), local(at)).days

    aggregate_pending()
    assert check("2026-11-24T08:00") == []  # the 22nd and 23rd complete, probed
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "DELETE FROM agg_h_id_hour WHERE bucket >= '2026-11-22' AND bucket < '2026-11-23'"
            )
        )
    assert check("2026-11-24T08:01") == ["deadline: 2026-11-22", "incomplete-day: 2026-11-22"]
    grid = days.listing(engine, 3, now=local("2026-11-24T08:01"))
    by_day = {d["day"]: d for d in grid["days"]}
    assert by_day["2026-11-22"]["cells"]["aggregation"] == "missing"
    assert by_day["2026-11-22"]["levels"]["H_ID"]["HOUR"] == "missing"
    assert by_day["2026-11-22"]["levels"]["H_ID"]["DAY"] == "complete"
    assert by_day["2026-11-23"]["complete"]
    with engine.begin() as conn:  # re-aggregate the 22nd
        conn.execute(sa.text("INSERT INTO agg_pending VALUES ('interaction_fact', :k)"),
                     {"k": calendar.key_of(instants[0])})  # fmt: skip
    aggregate_pending()
    assert check("2026-11-24T08:02") == []
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM incident WHERE resolved_at IS NULL")
            ).scalar_one()
            == 0
        )
