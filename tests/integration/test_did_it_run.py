"""Did it run? The firing ledger (O1), the watchdog (O2), incidents with mail and webhook
alerts (O3), data freshness (O4) and metrics (O5), on real PostgreSQL, Redis, SMTP (aiosmtpd)
and an HTTP receiver, with the beat's tick at chosen instants."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from conftest import Smtp, insert_run
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from devtools.localstack import free_port
from gim_tasks.db.engine import make_engine
from gim_tasks.lifecycle import Condition
from gim_tasks.monitor import alerts, incidents, ledger, mart_status, notify, watchdog
from gim_tasks.options import store
from gim_tasks.runtime.state import BEAT_KEY
from gim_tasks.schedule import plan
from gim_tasks.settings import get_settings
from gim_tasks.web import auth
from gim_tasks.web.app import create_app
from tests.integration.beat_harness import Beat, at

EXTRACT, STATS, AGGREGATE = "Job_ExtractICON", "Job_UpdateStats", "Job_AggregateGIM"


@pytest.fixture
def beat(gim_env: dict[str, str]) -> Beat:
    return Beat(gim_env)


def ledger_rows(engine: sa.Engine, job: str | None = None) -> list[Any]:
    with engine.connect() as conn:
        query = "SELECT * FROM firing" + (" WHERE job = :j" if job else "") + " ORDER BY planned_at"
        return list(conn.execute(sa.text(query), {"j": job}))


def verdicts(engine: sa.Engine, job: str, *clocks: str) -> list[str | None]:
    by_time = {row.planned_at: row.verdict for row in ledger_rows(engine, job)}
    return [by_time.get(at(f"2026-11-23 {clock}")) for clock in clocks]


def open_incidents(engine: sa.Engine) -> list[tuple[str, str, int]]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                sa.text(
                    "SELECT condition, job, firings FROM incident WHERE resolved_at IS NULL "
                    "ORDER BY condition, job"
                )
            )
        ]


def heartbeat(client: redis.Redis, at_seconds: float) -> None:
    client.hset(BEAT_KEY, mapping={"tick": at_seconds, "leader": "test:1"})


def test_o1_ledger_is_planned_a_day_ahead_and_every_firing_gets_one_verdict(
    beat: Beat, web_role_url: str
) -> None:
    engine = beat.engine
    web_engine = make_engine(web_role_url)  # the watchdog runs in the web app, as its role
    beat.cursors("2026-11-23 06:29:00")
    beat.tick("2026-11-23 06:29:30")  # nothing due: the plan is written
    with engine.connect() as conn:
        options = store.load_options(conn).schedule()
    now = at("2026-11-23 06:29:30")
    expected = {row["firing_id"] for row in ledger.planned(options, now, now + ledger.HORIZON)}
    rows = ledger_rows(engine)
    assert {row.firing_id for row in rows} == expected
    assert max(row.planned_at for row in rows) >= now + timedelta(hours=24)
    assert all(row.verdict is None for row in rows)
    etl = [row for row in rows if row.job == EXTRACT]
    assert len(etl) == len(
        [e for e in plan.plan(options, now, now + ledger.HORIZON) if e.job == EXTRACT]
    )
    beat.tick("2026-11-23 06:29:31")  # the same options: nothing is planned again
    assert len(ledger_rows(engine)) == len(rows)

    # The beat is down from 06:29:31 to 07:40: S12 runs one catch-up cycle for the 07:30 slot;
    # the 06:30 and 07:00 slots it collapsed are missed; the catch-up is late (600 s), beyond
    # late-alert-seconds (300): a late incident.
    beat.tick("2026-11-23 07:40:00")
    assert verdicts(engine, EXTRACT, "06:30:00", "07:00:00", "07:30:00", "08:00:00") == [
        "missed",
        "missed",
        "late",
        None,
    ]
    late = {row.planned_at: row for row in ledger_rows(engine, EXTRACT)}[at("2026-11-23 07:30:00")]
    (extract,) = beat.rows(EXTRACT)
    assert late.run_id == extract.id and late.lag_seconds == 600.0
    assert (
        "(S12)"
        in {row.planned_at: row for row in ledger_rows(engine, EXTRACT)}[
            at("2026-11-23 06:30:00")
        ].reason
    )
    assert verdicts(engine, STATS, "07:30:00", "07:40:00") == ["missed", "on-time"]
    assert open_incidents(engine) == [("late", EXTRACT, 1)]

    # The watchdog (another process) at 08:01:30: the 08:00 slots got no decision within the
    # 60 s grace: missed, one missed incident per job; the beat's heartbeat is fresh.
    client = beat.redis
    heartbeat(client, time.time())
    result = watchdog.check(web_engine, client, get_settings(), at("2026-11-23 08:01:30"))
    assert not result.skipped and not result.scheduler_down
    assert sorted(result.missed) == sorted(
        f"{job}:{at(f'2026-11-23 {clock}').astimezone(UTC).isoformat()}"
        for job, clock in ((EXTRACT, "08:00:00"), (STATS, "07:50:00"), (STATS, "08:00:00"))
    )
    assert open_incidents(engine) == [
        ("late", EXTRACT, 1),
        ("missed", EXTRACT, 1),
        ("missed", STATS, 2),
    ]
    # The beat comes back: it decides 08:00 (held: the 07:30 cycle still runs); the first
    # verdict stands, the run is filled in; deciding again resolves the missed incidents.
    beat.tick("2026-11-23 08:01:40")
    row = {r.planned_at: r for r in ledger_rows(engine, EXTRACT)}[at("2026-11-23 08:00:00")]
    assert row.verdict == "missed" and "(O2)" in row.reason and row.run_id is not None
    assert open_incidents(engine) == [("late", EXTRACT, 1)]
    # A second watchdog pass finds nothing new.
    again = watchdog.check(web_engine, client, get_settings(), at("2026-11-23 08:01:50"))
    assert again.missed == [] and open_incidents(engine) == [("late", EXTRACT, 1)]


def test_o1_options_change_plans_the_future_again(beat: Beat) -> None:
    beat.cursors("2026-11-23 06:29:00")
    beat.tick("2026-11-23 06:29:30")
    before = len(ledger_rows(beat.engine, EXTRACT))
    store.set_option(beat.engine, "schedule", "etl-frequency", "15", "test")
    beat.tick("2026-11-23 06:29:40")
    after = ledger_rows(beat.engine, EXTRACT)
    assert len(after) > before
    minutes = {row.planned_at.minute for row in after}
    assert minutes == {0, 15, 30, 45}
    store.set_option(beat.engine, "schedule", "run-scheduler", "false", "test")
    beat.tick("2026-11-23 06:29:50")
    assert [r for r in ledger_rows(beat.engine) if r.planned_at > at("2026-11-23 06:29:50")] == []


def test_o1_aggregation_window_open_held_by_a_running_aggregation_and_close_judged(
    beat: Beat,
) -> None:
    for option, value in (("run-aggregates", "true"), ("run-maintain", "false")):
        store.set_option(beat.engine, "schedule", option, value, "test")
    beat.cursors("2026-11-23 03:59:00")
    beat.tick("2026-11-23 03:59:30")
    manual = beat.run(AGGREGATE, "manual")
    beat.tick("2026-11-23 04:00:01")
    (opened,) = [r for r in ledger_rows(beat.engine, AGGREGATE) if r.stream == "window-open"][:1]
    assert opened.verdict == "held" and f"run {manual}" in opened.reason
    beat.end(manual)
    beat.tick("2026-11-23 04:00:05")  # the window's own run starts now: it fills in the run
    scheduled = [r for r in beat.rows(AGGREGATE) if r.trigger == "scheduled"]
    (opened,) = [r for r in ledger_rows(beat.engine, AGGREGATE) if r.stream == "window-open"][:1]
    assert (opened.verdict, opened.run_id) == ("held", scheduled[0].id)
    with beat.engine.begin() as conn:  # the worker claims it
        conn.execute(
            sa.text(
                "UPDATE job_run SET state = 'Running', heartbeat_at = now() + interval '1 day' "
                "WHERE id = :i"
            ),
            {"i": scheduled[0].id},
        )
    beat.tick("2026-11-24 03:00:02")  # 04:00 + 23:00: the window closes
    close = [r for r in ledger_rows(beat.engine, AGGREGATE) if r.stream == "window-close"][0]
    assert close.verdict == "on-time" and close.run_id == scheduled[0].id
    assert "stop of run" in close.reason


# --- the watchdog, incidents and their alerts ---------------------------------------------------


class Receiver:
    """A local HTTP webhook receiver; answers 500 to the first ``fail_first`` requests."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fail_first = fail_first
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                receiver.requests += 1
                if receiver.requests <= receiver.fail_first:
                    self.send_response(500)
                else:
                    receiver.bodies.append(body)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(fail_first=1)
    yield server
    server.close()


def test_o2_o3_silent_scheduler_one_incident_across_replicas_mail_and_webhook_with_retry(
    beat: Beat, receiver: Receiver, smtp: Smtp
) -> None:
    engine, client, settings = beat.engine, beat.redis, get_settings()
    alerts.add_webhook(engine, receiver.url, [], "test")
    notify.add_subscription(engine, EXTRACT, "ops@example.com", False, True, "test")
    notify.add_subscription(engine, STATS, "ops@example.com", False, True, "test")
    now = datetime.now(UTC)
    heartbeat(client, now.timestamp() - 120)  # the beat last ticked two minutes ago

    # Four replicas' passes at once: one incident, one message per target.
    def clock() -> datetime:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()

    before = clock()
    results: list[watchdog.Pass] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(watchdog.check(engine, client, settings, now))
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert open_incidents(engine) == [("scheduler-down", "", 1)]
    assert sum(1 for r in results if r.scheduler_down) >= 1
    after = clock()
    # The webhook failed once (HTTP 500): retried after the back-off (30 s), not before: its
    # next attempt is 30 s after the failed one, which happened between before and after.
    assert receiver.bodies == []
    with engine.connect() as conn:
        due = conn.execute(
            sa.text("SELECT next_attempt_at FROM alert WHERE channel = 'webhook'")
        ).scalar_one()
    assert before + timedelta(seconds=30) <= due <= after + timedelta(seconds=30)
    watchdog.check(engine, client, settings, now + timedelta(seconds=10))
    assert receiver.bodies == []
    with engine.begin() as conn:  # 30 s pass
        conn.execute(
            sa.text("UPDATE alert SET next_attempt_at = next_attempt_at - interval '30 s'")
        )
    watchdog.check(engine, client, settings, now + timedelta(seconds=31))
    (opened,) = receiver.bodies
    assert opened["condition"] == "scheduler-down" and opened["event"] == "opened"
    assert opened["job"] is None and opened["resolved_at"] is None
    assert opened["text"].startswith(
        "[gim-tasks] scheduler-down opened for the scheduler: no beat tick"
    )
    mails = [(to, mail) for to, mail in smtp.inbox.messages]
    assert [(to, mail["X-Gim-Kind"]) for to, mail in mails] == [
        (["ops@example.com"], "scheduler-down-opened")
    ]  # one per recipient, though subscribed to two jobs
    # Still silent: nothing repeats.
    watchdog.check(engine, client, settings, now + timedelta(seconds=90))
    assert len(receiver.bodies) == 1 and len(smtp.inbox.messages) == 1
    # The beat ticks again: resolved once, with its message.
    heartbeat(client, (now + timedelta(seconds=100)).timestamp())
    watchdog.check(engine, client, settings, now + timedelta(seconds=105))
    watchdog.check(engine, client, settings, now + timedelta(seconds=120))
    assert open_incidents(engine) == []
    assert [body["event"] for body in receiver.bodies] == ["opened", "resolved"]
    assert receiver.bodies[1]["resolved_at"] is not None
    assert [mail["X-Gim-Kind"] for _, mail in smtp.inbox.messages] == [
        "scheduler-down-opened",
        "scheduler-down-resolved",
    ]
    with engine.connect() as conn:
        listed = alerts.list_incidents(conn)
    assert [
        (d["channel"], d["event"], d["state"], d["attempts"]) for d in listed[0]["deliveries"]
    ] == [
        ("webhook", "opened", "sent", 2),
        ("mail", "opened", "sent", 1),
        ("webhook", "resolved", "sent", 1),
        ("mail", "resolved", "sent", 1),
    ]


def test_o3_failure_incident_opens_on_a_failed_run_and_resolves_on_success_webhook_only(
    beat: Beat, smtp: Smtp, web_role_url: str
) -> None:
    """The watchdog runs in the web app: here with the web's least-privilege role (A5)."""
    engine, client, settings = beat.engine, beat.redis, get_settings()
    web_engine = make_engine(web_role_url)
    receiver = Receiver()
    try:
        alerts.add_webhook(engine, receiver.url, ["failure"], "test")
        other = Receiver()
        alerts.add_webhook(engine, other.url, ["missed"], "test")
        notify.add_subscription(engine, EXTRACT, "ops@example.com", False, True, "test")
        heartbeat(client, time.time())
        with engine.begin() as conn:
            failed = insert_run(
                conn,
                job=EXTRACT,
                trigger="scheduled",
                actor="scheduler",
                state="Failed",
                started_at=sa.func.now(),
                ended_at=sa.func.now(),
                error="IDB unreachable",
            )
        watchdog.check(web_engine, client, settings)
        watchdog.check(web_engine, client, settings)  # still failing: no second incident
        assert open_incidents(engine) == [("failure", EXTRACT, 1)]
        (body,) = receiver.bodies
        assert body["run_id"] == failed and "IDB unreachable" in body["detail"]
        assert other.bodies == []  # it takes only missed firings
        assert smtp.inbox.messages == []  # the failed run's own letter (A3) is the mail
        with engine.begin() as conn:
            insert_run(
                conn,
                job=EXTRACT,
                trigger="manual",
                actor="ops",
                state="Completed",
                started_at=sa.func.now(),
                ended_at=sa.func.now(),
            )
        watchdog.check(web_engine, client, settings)
        assert open_incidents(engine) == []
        assert [b["event"] for b in receiver.bodies] == ["opened", "resolved"]
        other.close()
    finally:
        receiver.close()


def test_o4_stale_facts_open_one_incident_per_category_and_fresh_data_resolves_it(
    beat: Beat, web_role_url: str
) -> None:
    from gim_tasks.db.partitions import ensure_partitions

    engine, client = beat.engine, beat.redis
    web_engine = make_engine(web_role_url)
    heartbeat(client, time.time())
    data = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)

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

    from gim_tasks.aggregate.compute import ensure_tables

    with engine.begin() as conn:  # every aggregate table, empty: no level is judged
        ensure_tables(conn)
    fact(1, data)
    # The ETL SLO is 60 min (default): at 09:00 the newest data (08:00) is 60 min old.
    at_slo = watchdog.check(web_engine, client, get_settings(), data + timedelta(minutes=60))
    assert at_slo.stale == []
    result = watchdog.check(web_engine, client, get_settings(), data + timedelta(minutes=61))
    assert result.stale == ["ETL"]
    watchdog.check(web_engine, client, get_settings(), data + timedelta(minutes=90))
    ((condition, job, _),) = open_incidents(engine)
    assert (condition, job) == ("stale-data", "Job_TransformGIM")
    fact(2, data + timedelta(minutes=60))
    watchdog.check(web_engine, client, get_settings(), data + timedelta(minutes=90))
    assert open_incidents(engine) == []
    with engine.connect() as conn:
        by_table = {
            item["table"]: item
            for item in mart_status.data_freshness(
                conn, data + timedelta(minutes=200), store.load_options(conn)
            )
        }
    assert by_table["interaction_fact"]["data_time"] == (data + timedelta(minutes=60)).isoformat()
    assert by_table["interaction_fact"]["stale"] and by_table["HOUR"]["data_time"] is None
    # A table left out (0) is not judged; the others keep the category's SLO.
    store.set_option(
        engine, "monitor", "freshness-slo-minutes", "ETL=60, interaction_fact=0", "test"
    )
    result = watchdog.check(web_engine, client, get_settings(), data + timedelta(minutes=200))
    assert result.stale == [] and open_incidents(engine) == []


# --- the ledger and alerts through the CLI, the API and /metrics --------------------------------


def _gim(*argv: str) -> tuple[int, str]:
    from gim_tasks.cli.main import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(list(argv))
    return code, buffer.getvalue()


def test_o1_o5_firings_alerts_and_metrics_agree_across_cli_api_and_metrics(beat: Beat) -> None:
    engine = beat.engine
    beat.cursors("2026-11-23 06:29:00")
    beat.tick("2026-11-23 06:29:30")
    beat.tick("2026-11-23 07:40:00")
    auth.add_user(engine, "viewer", "viewer", "correct horse battery", "test")
    token = auth.create_token(engine, "viewer", actor="test")
    api = TestClient(create_app(get_settings(), engine), base_url="http://testserver")
    api.headers["Authorization"] = f"Bearer {token}"

    code, printed = _gim("firings", "--from", "2026-11-23", "--to", "2026-11-23T12:00", "--json")
    assert code == 0
    cli = json.loads(printed)
    reply = api.get("/api/firings", params={"from": "2026-11-23", "to": "2026-11-23T12:00"})
    assert reply.status_code == 200 and reply.json() == cli
    assert {row["verdict"] for row in cli} == {"missed", "late", "on-time", None}
    code, printed = _gim(
        "firings", "--from", "2026-11-23", "--verdict", "missed", "--job", EXTRACT, "--json"
    )
    missed = json.loads(printed)
    assert [row["planned_at"][11:16] for row in missed] == ["05:30", "06:00"]  # UTC
    assert (
        api.get(
            "/api/firings", params={"from": "2026-11-23", "verdict": "missed", "job": EXTRACT}
        ).json()
        == missed
    )
    # Bad filters: a clear error naming what is allowed, on both paths.
    reply = api.get("/api/firings", params={"from": "yesterday"})
    assert (
        reply.status_code == 422 and "'yesterday' is not a day YYYY-MM-DD" in reply.json()["error"]
    )
    assert api.get("/api/firings", params={"verdict": "bogus"}).status_code == 422
    code, _ = _gim("firings", "--verdict", "bogus")
    assert code != 0

    alerts_cli = json.loads(_gim("alerts", "--json")[1])
    assert api.get("/api/alerts").json() == alerts_cli
    assert [(a["condition"], a["job"]) for a in alerts_cli] == [("late", EXTRACT)]

    scrape = api.get("/metrics")
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scrape.text)
        for sample in family.samples
    }
    with engine.connect() as conn:
        missed_count = conn.execute(
            sa.text("SELECT count(*) FROM firing WHERE verdict = 'missed' AND job = :j"),
            {"j": STATS},
        ).scalar_one()
    assert missed_count > 0
    assert samples[("gim_firings_total", (("job", STATS), ("verdict", "missed")))] == missed_count
    assert samples[("gim_open_incidents", (("condition", "late"),))] == 1
    assert samples[("gim_firing_start_lag_seconds", (("job", EXTRACT),))] == 600.0
    assert ("gim_beat_last_tick_timestamp_seconds", ()) in samples
    assert samples[("gim_queue_depth", (("queue", "etl"),))] == beat.queued("etl")
    assert api.get("/metrics", headers={"Authorization": ""}).status_code == 401


def end_all(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE job_run SET state = 'Completed', ended_at = now() "
                "WHERE state IN ('Scheduled', 'Running')"
            )
        )


def test_o1_first_start_judges_no_firing_planned_before_the_first_beat(beat: Beat) -> None:
    """Issue 31: the very first beat tick against a database catches up a slot planned before
    the system existed: no verdict, no late incident. Later outages are judged as before."""
    engine = beat.engine
    beat.cursors("2026-11-23 06:29:00")  # the S12 catch-up of the 07:30 slot is due
    beat.tick("2026-11-23 07:40:00")  # the first tick ever: the epoch
    with engine.connect() as conn:
        epoch = conn.execute(sa.text("SELECT first_tick_at FROM scheduler_epoch")).scalar_one()
    assert epoch == at("2026-11-23 07:40:00")
    (catch_up,) = beat.rows(EXTRACT)  # the catch-up ran ...
    assert catch_up.planned_at == at("2026-11-23 07:30:00")
    # ... but no slot before the epoch is in the ledger, and nothing is late or missed.
    assert min(row.planned_at for row in ledger_rows(engine)) >= epoch
    assert verdicts(engine, EXTRACT, "06:30:00", "07:00:00", "07:30:00") == [None, None, None]
    assert open_incidents(engine) == []
    end_all(engine)
    beat.tick("2026-11-23 07:59:00")  # S3: Transform of the catch-up cycle
    end_all(engine)
    beat.tick("2026-11-23 08:00:05")
    assert verdicts(engine, EXTRACT, "08:00:00") == ["on-time"]
    # A later outage (beat down 08:00:05 to 09:40) is judged: the slots it collapsed are
    # missed, the catch-up is late; a second beat's first tick keeps the first epoch.
    beat.tick("2026-11-23 08:01:00")
    end_all(engine)
    beat.tick("2026-11-23 08:02:00")
    end_all(engine)
    second = Beat.__new__(Beat)
    second.__dict__.update(beat.__dict__)
    second.scheduler = type(beat.scheduler).__new__(type(beat.scheduler))
    second.scheduler.__dict__.update(
        {k: v for k, v in beat.scheduler.__dict__.items() if k != "_horizon"}
    )
    second.tick("2026-11-23 09:40:00")
    assert verdicts(engine, EXTRACT, "08:30:00", "09:00:00", "09:30:00") == [
        "missed",
        "missed",
        "late",
    ]
    assert ("late", EXTRACT, 1) in open_incidents(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT first_tick_at FROM scheduler_epoch")).scalar() == epoch


def test_o2_a_starting_watchdog_gives_the_beat_its_start_up_grace(beat: Beat) -> None:
    """Issue 31: a watchdog that started less than [monitor] startup-grace-seconds (120) ago
    and has seen no tick judges neither the scheduler nor missed firings; past the grace, or
    once a tick was seen and then stopped for 60 s, the scheduler is down."""
    engine, client, settings = beat.engine, beat.redis, get_settings()
    beat.cursors("2026-11-23 06:29:00")
    beat.tick("2026-11-23 06:29:30")  # the ledger is planned: a beat ran here before
    started = at("2026-11-23 07:00:00")  # the whole stack restarts: the 06:30 slot is undecided
    heartbeat(client, at("2026-11-23 06:29:30").timestamp())  # last tick before the restart
    first = watchdog.check(engine, client, settings, started + timedelta(seconds=15), started)
    assert first.starting and not first.scheduler_down and first.missed == []
    assert open_incidents(engine) == [] and verdicts(engine, EXTRACT, "06:30:00") == [None]
    late = watchdog.check(engine, client, settings, started + timedelta(seconds=121), started)
    assert not late.starting and late.scheduler_down
    (down,) = [i for i in open_incidents(engine) if i[0] == "scheduler-down"]
    with engine.connect() as conn:
        detail = conn.execute(
            sa.text("SELECT detail FROM incident WHERE condition = 'scheduler-down'")
        ).scalar_one()
    assert detail.startswith("no beat tick in the 121 s since the watchdog started (last at")
    assert verdicts(engine, EXTRACT, "06:30:00") == ["missed"]
    # A tick after the start resolves it; silence of 60 s after it opens it again.
    tick = started + timedelta(seconds=130)
    heartbeat(client, tick.timestamp())
    assert not watchdog.check(engine, client, settings, tick, started).scheduler_down
    assert [i for i in open_incidents(engine) if i[0] == "scheduler-down"] == []
    quiet = watchdog.check(engine, client, settings, tick + timedelta(seconds=59), started)
    assert not quiet.starting and not quiet.scheduler_down
    assert watchdog.check(
        engine, client, settings, tick + timedelta(seconds=61), started
    ).scheduler_down
    # With no heartbeat at all, a fresh watchdog waits the grace, set here to 30 s.
    client.delete(BEAT_KEY)
    store.set_option(engine, "monitor", "startup-grace-seconds", "30", "test")
    restarted = tick + timedelta(minutes=5)
    assert watchdog.check(
        engine, client, settings, restarted + timedelta(seconds=29), restarted
    ).starting
    gone = watchdog.check(engine, client, settings, restarted + timedelta(seconds=31), restarted)
    assert gone.scheduler_down and not gone.starting


def test_o2_a_pass_while_another_holds_the_lock_does_nothing_and_no_pass_starts_a_run(
    beat: Beat, web_role_url: str
) -> None:
    """O2 (issue 32): a second pass while one holds the watchdog lock is skipped and touches
    no row; a pass that does its work (missed firings, a silent beat) starts no run and puts
    no message on any queue."""
    from gim_tasks.db import locks
    from gim_tasks.runtime.queues import QUEUES

    engine, client, settings = beat.engine, beat.redis, get_settings()
    web_engine = make_engine(web_role_url)
    beat.cursors("2026-11-23 06:29:00")
    beat.tick("2026-11-23 06:29:30")  # the plan is written; nothing is due yet
    heartbeat(client, at("2026-11-23 06:29:30").timestamp())  # silent ever since

    def snapshot() -> tuple[list[Any], ...]:
        with engine.connect() as conn:
            return tuple(
                list(conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1")))
                for table in ("firing", "incident", "alert", "job_run")
            )

    def queued() -> dict[str, int]:
        return {queue: int(client.llen(queue)) for queue in (*QUEUES, "celery")}

    before, messages = snapshot(), queued()
    assert before[3] == [] and set(messages.values()) == {0}
    now = at("2026-11-23 08:00:00")  # the 06:30 ... 07:30 slots are past their grace
    with engine.connect() as other, other.begin():
        assert locks.try_hold(other, locks.WATCHDOG)  # a pass in progress elsewhere
        second = watchdog.check(web_engine, client, settings, now)
        assert second.skipped
        assert (second.missed, second.scheduler_down, second.failing) == ([], False, [])
        assert snapshot() == before
    done = watchdog.check(web_engine, client, settings, now)
    assert not done.skipped and done.scheduler_down and len(done.missed) >= 3
    after = snapshot()
    assert after[0] != before[0] and after[1] != before[1]  # verdicts and incidents written
    assert after[3] == [] and queued() == messages  # no run, no message


def test_o3_webhooks_follow_no_redirect_hide_their_url_and_refuse_link_local(
    beat: Beat,
) -> None:
    """Issue 41: a receiver's redirect is a failed delivery (no GET to where it points);
    viewers see a webhook's scheme and host, not its URL (often a secret); a link-local URL
    (cloud metadata) is refused at registration."""
    from gim_tasks.errors import GimError

    engine, settings = beat.engine, get_settings()
    requests: list[tuple[str, str]] = []

    class Redirecting(BaseHTTPRequestHandler):
        def _note(self) -> None:
            requests.append((self.command, self.path))

        def do_POST(self) -> None:
            self._note()
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.end_headers()

        def do_GET(self) -> None:
            self._note()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook/s3cr3t-token"
        alerts.add_webhook(engine, url, [], "test")
        with engine.begin() as conn:
            incidents.open_incident(conn, EXTRACT, Condition.FAILURE, "boom")
        assert alerts.deliver(engine, settings) == (0, 1)
    finally:
        server.shutdown()
        server.server_close()
    assert requests == [("POST", "/hook/s3cr3t-token")]  # the redirect was not followed
    with engine.connect() as conn:
        (listed,) = alerts.list_incidents(conn)
        error = conn.execute(sa.text("SELECT last_error FROM alert")).scalar_one()
    assert "302" in error
    (delivery,) = listed["deliveries"]
    assert delivery["target"] == f"http://127.0.0.1:{server.server_port}/…"
    assert "s3cr3t" not in json.dumps(listed)
    with pytest.raises(GimError, match="link-local"):
        alerts.add_webhook(engine, "http://169.254.169.254/latest/meta-data", [], "test")
