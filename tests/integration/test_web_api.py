"""The Monitor Jobs app and API against real PostgreSQL and Redis (SPEC A1, A2, A4, A5, M1,
M6; issue 10). Requests go through the real ASGI app in-process (httpx's TestClient)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import insert_run
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from gim_tasks.db.engine import make_engine
from gim_tasks.db.tables import ROLES, job_run, option_value
from gim_tasks.monitor import notify
from gim_tasks.options import store
from gim_tasks.settings import get_settings
from gim_tasks.web import auth
from gim_tasks.web.app import MAX_BODY, create_app
from gim_tasks.web.errors import every_route

PASSWORD = "correct horse 1"

#: Every route and the weakest role that may call it ("public": anyone). A route added to
#: the app without an entry here fails test_every_route_checks_its_role.
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "public",
    ("GET", "/login"): "public",
    ("POST", "/login"): "public",
    ("POST", "/logout"): "viewer",
    ("GET", "/"): "viewer",
    ("GET", "/jobs/scheduled"): "viewer",
    ("GET", "/jobs/running"): "viewer",
    ("GET", "/jobs/history"): "viewer",
    ("GET", "/runs/{run_id}"): "viewer",
    ("GET", "/etl"): "viewer",
    ("GET", "/aggregation"): "viewer",
    ("GET", "/alerts"): "viewer",
    ("GET", "/timeline"): "viewer",
    ("GET", "/options/preview"): "admin",
    ("GET", "/jobs/run"): "operator",
    ("POST", "/jobs/run"): "operator",
    ("POST", "/runs/{run_id}/stop"): "operator",
    ("POST", "/runs/{run_id}/cancel"): "operator",
    ("GET", "/options"): "viewer",
    ("POST", "/options"): "admin",
    ("GET", "/notifications"): "viewer",
    ("POST", "/notifications"): "admin",
    ("POST", "/notifications/{subscription_id}/delete"): "admin",
    ("GET", "/jobs/{job}/notifications"): "viewer",
    ("POST", "/jobs/{job}/notifications"): "admin",
    ("GET", "/api/openapi.json"): "viewer",
    ("GET", "/api/docs"): "viewer",
    ("GET", "/api/docs/assets/{name}"): "viewer",
    ("GET", "/api/me"): "viewer",
    ("GET", "/api/jobs/scheduled"): "viewer",
    ("GET", "/api/runs"): "viewer",
    ("GET", "/api/runs/{run_id}"): "viewer",
    ("POST", "/api/runs"): "operator",
    ("POST", "/api/runs/{run_id}/stop"): "operator",
    ("POST", "/api/runs/{run_id}/cancel"): "operator",
    ("GET", "/api/summary"): "viewer",
    ("GET", "/api/etl/status"): "viewer",
    ("GET", "/api/firings"): "viewer",
    ("GET", "/api/alerts"): "viewer",
    ("GET", "/api/timeline"): "viewer",
    ("POST", "/api/schedule/preview"): "admin",
    ("GET", "/metrics"): "viewer",
    ("GET", "/api/aggregate/status"): "viewer",
    ("GET", "/api/options"): "viewer",
    ("PUT", "/api/options/{section}/{name}"): "admin",
    ("DELETE", "/api/options/{section}/{name}"): "admin",
    ("GET", "/api/notifications"): "viewer",
    ("POST", "/api/notifications"): "admin",
    ("DELETE", "/api/notifications/{subscription_id}"): "admin",
    ("GET", "/api/holds"): "viewer",
    ("POST", "/api/jobs/{job}/pause"): "operator",
    ("POST", "/api/pause"): "operator",
    ("POST", "/api/jobs/{job}/resume"): "operator",
    ("POST", "/api/resume"): "operator",
    ("POST", "/api/jobs/{job}/skip"): "operator",
    ("POST", "/api/blackouts"): "admin",
    ("DELETE", "/api/blackouts/{name}"): "admin",
    ("POST", "/jobs/{job}/pause"): "operator",
    ("POST", "/jobs/{job}/resume"): "operator",
    ("GET", "/api/planned-runs"): "viewer",
    ("POST", "/api/planned-runs"): "operator",
    ("DELETE", "/api/planned-runs/{firing_id}"): "operator",
    ("POST", "/planned-runs/cancel"): "operator",
    ("POST", "/blackouts"): "admin",
    ("POST", "/blackouts/delete"): "admin",
    ("GET", "/audit"): "admin",
    ("GET", "/days"): "viewer",
    ("GET", "/api/days"): "viewer",
    ("GET", "/api/audit"): "admin",
    ("POST", "/api/runs/{run_id}/notes"): "operator",
    ("POST", "/api/firings/{firing_id}/notes"): "operator",
    ("POST", "/api/incidents/{incident_id}/notes"): "operator",
    ("POST", "/api/incidents/{incident_id}/ack"): "operator",
    ("POST", "/notes"): "operator",
    ("POST", "/alerts/{incident_id}/ack"): "operator",
    ("GET", "/api/checks"): "viewer",
    ("POST", "/api/checks/override"): "admin",
    ("POST", "/days/override"): "admin",
    ("GET", "/backfills"): "viewer",
    ("GET", "/backfills/{backfill_id}"): "viewer",
    ("POST", "/backfills"): "operator",
    ("POST", "/backfills/{backfill_id}/{action}"): "operator",
    ("GET", "/api/backfills"): "viewer",
    ("GET", "/api/backfills/{backfill_id}"): "viewer",
    ("POST", "/api/backfills"): "operator",
    ("POST", "/api/backfills/{backfill_id}/pause"): "operator",
    ("POST", "/api/backfills/{backfill_id}/resume"): "operator",
    ("POST", "/api/backfills/{backfill_id}/cancel"): "operator",
}

#: A body for each state-changing route, valid enough to get past validation.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/jobs/run"): {"job": "Job_UpdateStats"},
    ("POST", "/options"): {"section": "schedule", "name": "run-export", "value": "false"},
    ("POST", "/notifications"): {"job": "Job_ExportGIM", "recipient": "a@example.com"},
    ("POST", "/jobs/{job}/notifications"): {
        "add_email": "b@example.com",
        "add_email_error": "true",
    },
    ("POST", "/api/runs"): {"job": "Job_UpdateStats"},
    ("POST", "/api/schedule/preview"): {"values": {"etl-frequency": "15"}},
    ("PUT", "/api/options/{section}/{name}"): {"value": "false"},
    ("POST", "/api/notifications"): {"job": "Job_ExportGIM", "recipient": "a@example.com"},
    ("POST", "/api/jobs/{job}/pause"): {"reason": "role test"},
    ("POST", "/api/pause"): {"reason": "role test"},
    ("POST", "/api/jobs/{job}/skip"): {"reason": "role test", "firing_id": "none"},
    ("POST", "/api/blackouts"): {"name": "w", "kind": "month-end", "days": 2, "reason": "x"},
    ("POST", "/jobs/{job}/pause"): {"reason": "role test"},
    ("POST", "/api/planned-runs"): {
        "job": "Job_ExtractICON",
        "at": "2099-01-01T00:00:00+00:00",
        "reason": "role test",
    },
    ("POST", "/planned-runs/cancel"): {"firing_id": "at:none"},
    ("POST", "/blackouts"): {"name": "w", "kind": "month-end", "days": "2", "reason": "x"},
    ("POST", "/blackouts/delete"): {"name": "w"},
    ("POST", "/api/runs/{run_id}/notes"): {"text": "role test"},
    ("POST", "/api/firings/{firing_id}/notes"): {"text": "role test"},
    ("POST", "/api/incidents/{incident_id}/notes"): {"text": "role test"},
    ("POST", "/api/incidents/{incident_id}/ack"): {},
    ("POST", "/notes"): {"kind": "run", "target": "999999", "text": "role test"},
    ("POST", "/api/checks/override"): {"day": "2026-11-23", "check": "hour-rows", "reason": "r"},
    ("POST", "/days/override"): {"day": "2026-11-23", "check": "hour-rows", "reason": "r"},
    ("POST", "/api/backfills"): {
        "from": "2026-11-20",
        "to": "2026-11-21",
        "reprocess": "all",
        "reason": "role test",
        "dry_run": True,
    },
    ("POST", "/backfills"): {"first": "2026-11-20", "last": "2026-11-21", "reason": "r"},
}


class Web:
    def __init__(self, app: Any, engine: sa.Engine) -> None:
        self.app, self.engine = app, engine
        self.tokens = {role: auth.create_token(engine, role, actor="test") for role in ROLES}

    def client(self) -> TestClient:
        return TestClient(self.app, base_url="http://testserver", follow_redirects=False)

    def session(self, role: str) -> tuple[TestClient, str]:
        """A logged-in browser-like client and its CSRF token."""
        client = self.client()
        form = client.get("/login")
        csrf = _csrf(form.text)
        reply = client.post(
            "/login", data={"name": role, "password": PASSWORD, "csrf": csrf, "next": "/"}
        )
        assert reply.status_code == 303, reply.text
        return client, _csrf(client.get("/jobs/scheduled").text)

    def api(self, role: str) -> TestClient:
        client = self.client()
        client.headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return client


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


@pytest.fixture
def web(gim_env: dict[str, str]) -> Iterator[Web]:
    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    for role in ROLES:
        auth.add_user(engine, role, role, PASSWORD, "test", email=f"{role}@example.com")
    yield Web(create_app(get_settings(), engine), engine)
    engine.dispose()


def _app_routes(app: Any) -> set[tuple[str, str]]:
    found = set()
    for route in every_route(app):
        if isinstance(route, Mount):
            assert route.path == "/static", f"unexpected mount {route.path}"
            continue
        assert isinstance(route, APIRoute | Route)
        for method in route.methods or ():
            if method != "HEAD":
                found.add((method, route.path))
    return found


def _call(client: TestClient, method: str, path: str, csrf: str | None) -> Any:
    url = path.format(
        run_id=999999,
        subscription_id=999999,
        section="schedule",
        name="run-export",
        job="Job_ExportGIM",
        firing_id="at:none",
        incident_id=999999,
        backfill_id=999999,
        action="pause",
    )
    body = BODIES.get((method, path))
    if path.startswith("/api"):
        headers = {"X-CSRF-Token": csrf} if csrf else {}
        return client.request(method, url, json=body, headers=headers)
    if method == "POST":
        data = {**(body or {}), **({"csrf": csrf} if csrf else {})}
        return client.request(method, url, data=data)
    return client.request(method, url)


def test_a5_every_route_checks_its_role(web: Web) -> None:
    """Table-driven: the app's routes are exactly the table's; anonymous callers get 401 (API,
    JSON) or the login page (pages); weaker roles 403; the role and stronger ones get in."""
    assert _app_routes(web.app) == set(ROUTES), "a route is missing from the role table"
    sessions = {role: web.session(role) for role in ROLES}
    for (method, path), needed in ROUTES.items():
        anonymous = _call(web.client(), method, path, None)
        if needed == "public":
            assert anonymous.status_code < 400 or path == "/login", (method, path)
            continue
        if path.startswith("/api") or path == "/metrics":
            assert anonymous.status_code == 401, (method, path, anonymous.text)
            assert "error" in anonymous.json()
        else:
            assert anonymous.status_code == 303, (method, path)
            assert anonymous.headers["location"].startswith("/login")
        for role in ROLES:
            allowed = ROLES.index(role) >= ROLES.index(needed)
            callers = [("token", web.api(role), None), ("session", *sessions[role])]
            for via, client, csrf in callers:
                reply = _call(client, method, path, csrf)
                if allowed:
                    assert reply.status_code not in (401, 403), (method, path, role, via)
                else:
                    assert reply.status_code == 403, (method, path, role, via, reply.text[:200])
                    if path.startswith("/api") or path == "/metrics":
                        assert "needs the" in reply.json()["error"]
            if path == "/logout" and allowed:
                sessions[role] = web.session(role)  # logged out by the call: log in again


def test_a5_session_writes_need_the_csrf_token(web: Web) -> None:
    client, csrf = web.session("admin")
    refused = client.post(
        "/options", data={"section": "schedule", "name": "run-export", "value": "true"}
    )
    assert refused.status_code == 403 and "CSRF" in refused.text
    forged = client.post(
        "/api/runs", json={"job": "Job_MaintainGIM"}, headers={"X-CSRF-Token": "forged"}
    )
    assert forged.status_code == 403 and "CSRF" in forged.json()["error"]
    with web.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(option_value)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(job_run)).scalar() == 0
    accepted = client.post(
        "/options",
        data={"section": "schedule", "name": "run-export", "value": "true", "csrf": csrf},
    )
    assert accepted.status_code == 303
    with web.engine.connect() as conn:
        assert store.load_options(conn).text("schedule", "run-export") == "true"
        assert store.load_options(conn).changes[("schedule", "run-export")].actor == "admin"


def test_login_failures_and_no_open_redirect(web: Web) -> None:
    client = web.client()
    csrf = _csrf(client.get("/login").text)
    wrong = client.post("/login", data={"name": "admin", "password": "nope", "csrf": csrf})
    assert wrong.status_code == 401 and "wrong user name or password" in wrong.text
    nobody = client.post("/login", data={"name": "ghost", "password": "x" * 9, "csrf": csrf})
    assert nobody.status_code == 401
    good = client.post(
        "/login",
        data={"name": "viewer", "password": PASSWORD, "csrf": csrf, "next": "//evil.example"},
    )
    assert good.status_code == 303 and good.headers["location"] == "/jobs/scheduled"
    assert (
        "gim_session" in good.headers["set-cookie"]
        and "httponly" in good.headers["set-cookie"].lower()
    )
    bad_token = web.client().get("/api/me", headers={"Authorization": "Bearer gim_forged"})
    assert bad_token.status_code == 401 and "invalid API token" in bad_token.json()["error"]


def test_a1_scheduled_view_json_and_page(web: Web) -> None:
    store.set_option(web.engine, "schedule", "timezone", "Europe/Berlin", "alice")
    rows = web.api("viewer").get("/api/jobs/scheduled").json()
    assert [r["name"] for r in rows] == [
        "Job_ExtractICON",
        "Job_TransformGIM",
        "Job_AggregateGIM",
        "Job_MaintainGIM",
        "Job_UpdateStats",
        "Job_ExportGIM",
        "Job_BackfillGIM",
    ]
    for row in rows:
        assert set(row) >= {"name", "category", "active", "creator", "schedule", "next_run"}
    extract = rows[0]
    assert extract["creator"] == "alice" and extract["active"] is True
    assert extract["schedule"] == "every 30 min from 06:30 to 00:30, Europe/Berlin"
    next_run = datetime.fromisoformat(extract["next_run"])
    assert next_run.utcoffset() is not None and next_run.utcoffset().total_seconds() in (
        3600,
        7200,
    )
    export = rows[-2]
    assert export["active"] is False and export["next_run"] is None  # run-export=false
    backfill = rows[-1]  # B1: its runs are the items of back-fills; no firing of its own
    assert backfill["next_run"] is None and "back-fills" in backfill["schedule"]
    api = web.api("viewer")
    assert api.get("/api/jobs/scheduled", params={"category": "etl"}).status_code == 422
    etl_only = api.get("/api/jobs/scheduled", params={"category": "ETL"}).json()
    assert {r["name"] for r in etl_only} == {"Job_ExtractICON", "Job_TransformGIM"}
    unknown = web.api("viewer").get("/api/jobs/scheduled", params={"category": "nope"})
    assert unknown.status_code == 422 and "'ETL', 'Aggregation'" in unknown.json()["error"]
    client, _ = web.session("viewer")
    html = client.get("/jobs/scheduled").text
    assert "Job_ExtractICON" in html and "Europe/Berlin" in html and "alice" in html
    # Issue 31: each job's description and the options that schedule it, linked to the
    # Options page at the option's row.
    stats = rows[4]
    assert stats["description"].startswith("Updates PostgreSQL's planner statistics")
    assert stats["scheduled_by"] == [
        "timezone",
        "run-scheduler",
        "run-update-stats",
        "update-stats-schedule",
    ]
    assert "Extracts new and changed data from every IDB" in html
    assert '<a href="/options#schedule-update-stats-schedule">update-stats-schedule</a>' in html
    options_page = client.get("/options").text
    assert all(
        f'id="schedule-{name}"' in options_page for row in rows for name in row["scheduled_by"]
    )
    assert "Run Job" not in html  # a viewer is not offered what they may not do


def test_m1_m6_run_stop_cancel_and_history_through_the_api(web: Web) -> None:
    operator = web.api("operator")
    reply = operator.post("/api/runs", json={"job": "Job_MaintainGIM"})
    assert reply.status_code == 201 and reply.json()["state"] == "Running"
    maintenance = reply.json()["run_id"]
    waiting = operator.post("/api/runs", json={"job": "Job_ExtractICON"}).json()
    assert waiting["state"] == "Scheduled" and "maintenance" in waiting["reason"]
    again = operator.post("/api/runs", json={"job": "Job_ExtractICON"})
    assert again.status_code == 409 and again.json()["state"] == "Rejected"
    forced = operator.post("/api/runs", json={"job": "Job_ExportGIM", "force": True})
    assert forced.status_code == 403 and "admin" in forced.json()["error"]
    scheduled = web.api("viewer").get("/api/runs", params={"which": "scheduled"}).json()
    assert {r["id"] for r in scheduled} >= {maintenance, waiting["run_id"]}
    cancelled = operator.post(f"/api/runs/{waiting['run_id']}/cancel")
    assert cancelled.status_code == 200 and "Cancelled" in cancelled.json()["result"]
    not_running = operator.post(f"/api/runs/{waiting['run_id']}/stop")
    assert not_running.status_code == 409 and "Cancelled" in not_running.json()["error"]
    missing = operator.post("/api/runs/424242/cancel")
    assert missing.status_code == 404
    with web.engine.begin() as conn:  # as a worker would: the run starts
        conn.execute(
            sa.update(job_run)
            .where(job_run.c.id == maintenance)
            .values(state="Running", started_at=sa.func.now(), dispatched_at=None)
        )
    stopped = operator.post(f"/api/runs/{maintenance}/stop").json()
    assert "stop requested" in stopped["result"]
    detail = web.api("viewer").get(f"/api/runs/{maintenance}").json()
    assert detail["stop_requested"] is True and detail["reason"] == "stopped by operator"
    history = (
        web.api("viewer").get("/api/runs", params={"which": "history", "state": "Cancelled"}).json()
    )
    assert [r["id"] for r in history] == [waiting["run_id"]]
    assert history[0]["actor"] == "operator" and history[0]["started_at"] is None
    bad_state = web.api("viewer").get("/api/runs", params={"state": "Done"})
    assert bad_state.status_code == 422
    assert (
        "'Done' is not one or several (comma-separated) of Scheduled, Running"
        in (bad_state.json()["error"])
    )
    bad_date = web.api("viewer").get("/api/runs", params={"date": "22/11/2026"})
    assert bad_date.status_code == 422
    assert [d["field"] for d in bad_date.json()["details"]] == ["query.date"]


def test_m4_aggregation_parameters_are_validated(web: Web) -> None:
    operator = web.api("operator")
    bad = operator.post(
        "/api/runs",
        json={
            "job": "Job_AggregateGIM",
            "params": "-insertPendingAgg H_NOPE-DAY:2026-01-01:2026-01-02",
        },
    )
    # Malformed: refused at once naming the bad token, nothing recorded (M0, M4).
    assert bad.status_code == 400 and "H_NOPE" in bad.json()["error"]
    with web.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(job_run)).scalar_one() == 0
    wrong_job = operator.post(
        "/api/runs", json={"job": "Job_ExtractICON", "params": "-insertPendingAgg ALLSETS:x:y"}
    )
    assert wrong_job.status_code == 400 and "only Job_AggregateGIM" in wrong_job.json()["error"]


def test_bad_payloads_get_clear_errors_and_store_nothing(web: Web) -> None:
    admin = web.api("admin")
    huge = admin.post(
        "/api/runs",
        content=b"{" + b" " * (MAX_BODY + 10) + b"}",
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413 and "larger than" in huge.json()["error"]
    broken = admin.post(
        "/api/runs", content=b'{"job": ', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and "invalid request" in broken.json()["error"]
    missing = admin.post("/api/runs", json={})
    assert missing.status_code == 422 and "job" in missing.json()["error"]
    unknown = admin.post("/api/runs", json={"job": "Job_Nope"})
    assert unknown.status_code == 422
    assert unknown.json()["details"] == [
        {
            "field": "job",
            "message": "Input should be 'Job_ExtractICON', 'Job_TransformGIM', "
            "'Job_AggregateGIM', 'Job_MaintainGIM', 'Job_UpdateStats', 'Job_ExportGIM' or "
            "'Job_BackfillGIM'",
        }
    ]
    option = admin.put("/api/options/schedule/etl-frequency", json={"value": "0"})
    assert option.status_code == 400 and "etl-frequency" in option.json()["error"]
    no_option = admin.put("/api/options/schedule/nope", json={"value": "1"})
    assert no_option.status_code == 422 and "run-export" in no_option.json()["error"]
    # A name of another section: the section has no such option (404, naming its options).
    elsewhere = admin.put("/api/options/schedule/days-to-keep-facts", json={"value": "1"})
    assert elsewhere.status_code == 404
    assert "[schedule] has no option 'days-to-keep-facts'" in elsewhere.json()["error"]
    bad_recipient = admin.post(
        "/api/notifications", json={"job": "Job_ExportGIM", "recipient": "not an address"}
    )
    assert bad_recipient.status_code == 404 and "neither a user" in bad_recipient.json()["error"]
    with web.engine.connect() as conn:
        for table in ("job_run", "option_value", "notification_subscription"):
            count = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
            assert count == 0, table


@pytest.mark.date_sensitive
def test_a4_summary_counts_runs_and_failures_per_category(web: Web) -> None:
    """A4 with R4: scheduled runs only (manual ones are not counted); a planned stop is a
    success, an operator's stop neither, a shutdown and a firing blocked by the configuration
    check (C2) failures; a rule's skip is no run at all (listed only as skipped). The widget:
    an error icon per failing category, its failed runs, "More info" opening exactly them."""
    with web.engine.begin() as conn:
        for job, state, trigger, stop_kind, skip in [
            ("Job_ExtractICON", "Completed", "scheduled", None, None),
            ("Job_ExtractICON", "Failed", "scheduled", None, None),
            ("Job_TransformGIM", "Completed with warnings", "scheduled", None, None),
            ("Job_ExtractICON", "Failed", "manual", None, None),  # manual: not counted
            ("Job_ExtractICON", "Rejected", "scheduled", None, "rule"),  # S1: no event
            ("Job_MaintainGIM", "Stopped", "scheduled", "shutdown", None),
            ("Job_MaintainGIM", "Stopped", "scheduled", "preempted", None),  # planned: success
            ("Job_AggregateGIM", "Stopped", "restart", "window-end", None),  # planned: success
            ("Job_AggregateGIM", "Stopped", "scheduled", "operator", None),  # neither
            ("Job_ExportGIM", "Rejected", "manual", None, None),  # a refused request
            ("Job_ExportGIM", "Rejected", "scheduled", None, "blocked"),  # C2: a failure
        ]:
            insert_run(
                conn,
                job=job,
                trigger=trigger,
                actor="t",
                state=state,
                ended_at=sa.func.now(),
                error="boom" if state == "Failed" else None,
                reason="configuration check failed: IDB 1: down" if skip else None,
                stop_kind=stop_kind,
                ended_by="ops" if stop_kind == "operator" else None,
                skip=skip,
            )
    viewer = web.api("viewer")
    summary = viewer.get("/api/summary", params={"days": 3}).json()
    by = {c["category"]: c for c in summary["categories"]}
    assert (by["ETL"]["runs"], by["ETL"]["failures"]) == (3, 1)
    assert (by["Maintenance"]["runs"], by["Maintenance"]["failures"]) == (2, 1)
    assert (by["Aggregation"]["runs"], by["Aggregation"]["failures"]) == (2, 0)
    assert (by["Export"]["runs"], by["Export"]["failures"]) == (1, 1)
    assert by["Export"]["failed"][0]["error"].startswith("configuration check failed")
    assert [f["job"] for f in by["ETL"]["failed"]] == ["Job_ExtractICON"]
    listed = viewer.get("/api/runs").json()
    assert len(listed) == 10 and all(r["skip"] != "rule" for r in listed)
    outcomes = {(r["job"], r["stop_kind"], r["trigger"], r["state"]): r["outcome"] for r in listed}
    assert outcomes[("Job_AggregateGIM", "window-end", "restart", "Stopped")] == "success"
    assert outcomes[("Job_AggregateGIM", "operator", "scheduled", "Stopped")] == "operator"
    assert outcomes[("Job_MaintainGIM", "shutdown", "scheduled", "Stopped")] == "failure"
    assert outcomes[("Job_ExportGIM", None, "scheduled", "Rejected")] == "failure"
    assert outcomes[("Job_ExportGIM", None, "manual", "Rejected")] is None
    (skipped,) = viewer.get("/api/runs", params={"which": "skipped"}).json()
    assert skipped["skip"] == "rule" and skipped["job"] == "Job_ExtractICON"

    client, _ = web.session("viewer")
    page = client.get("/jobs/history?category=ETL").text
    assert page.count('data-run="') == 4  # the rule's skip is not in History
    # The widget: a category opens History preselected; an error icon on the failing ones.
    assert 'href="/jobs/history?category=ETL"' in page
    assert page.count('class="error-icon"') == 3  # ETL, Maintenance, Export
    more = re.search(r'data-category="Export">.*?class="more-info" href="([^"]+)"', page, re.S)
    assert more is not None
    selected = client.get(html.unescape(more.group(1))).text
    shown = set(re.findall(r'<tr class="[^"]*" data-run="(\d+)"', selected))
    assert shown == {str(f["id"]) for f in by["Export"]["failed"]}
    assert "blocked by the configuration check" in selected and "outcome-failure" in selected
    aggregation = client.get("/jobs/history?category=Aggregation").text
    assert aggregation.count("outcome-failure") == 0  # planned and operator stops: not red
    assert aggregation.count("outcome-success") == 1 and "operator by ops" in aggregation


@pytest.mark.date_sensitive
def test_a4_summary_counts_only_runs_ended_within_the_last_n_days(web: Web) -> None:
    """A4 (issue 32): the window is the last N days, to the minute: runs ended just inside it
    count, runs ended just before it do not, whatever N."""
    ids = {}
    with web.engine.begin() as conn:
        for name, ago, state in [
            ("inside-3", "2 days 23 hours 59 minutes", "Failed"),
            ("outside-3", "3 days 1 minute", "Failed"),
            ("outside-7", "7 days 1 minute", "Completed"),
            ("today", "1 minute", "Completed"),
        ]:
            ids[name] = insert_run(
                conn,
                job="Job_ExtractICON",
                trigger="scheduled",
                actor="scheduler",
                state=state,
                ended_at=sa.func.now() - sa.cast(ago, sa.Interval),
                error="boom" if state == "Failed" else None,
            )
    viewer = web.api("viewer")

    def etl(days: int) -> tuple[int, int, list[int]]:
        found = viewer.get("/api/summary", params={"days": days}).json()
        (category,) = [c for c in found["categories"] if c["category"] == "ETL"]
        return category["runs"], category["failures"], sorted(f["id"] for f in category["failed"])

    assert etl(3) == (2, 1, [ids["inside-3"]])
    assert etl(7) == (3, 2, [ids["inside-3"], ids["outside-3"]])
    assert etl(8) == (4, 2, [ids["inside-3"], ids["outside-3"]])


def test_running_tab_shows_live_progress_and_stop(web: Web) -> None:
    with web.engine.begin() as conn:
        run_id = insert_run(
            conn,
            job="Job_ExtractICON",
            trigger="manual",
            actor="ops",
            state="Running",
            started_at=sa.func.now(),
            rows_read=1500,
            summary={"progress": {"what": "extract party_segment", "done": 12345, "total": None}},
        )
    viewer, _ = web.session("viewer")
    page = viewer.get("/jobs/running").text
    assert f'data-run="{run_id}"' in page and "extract party_segment: 12,345" in page
    assert "1,500" in page and 'class="stop"' not in page  # a viewer may not stop
    operator, _ = web.session("operator")
    assert 'class="stop"' in operator.get("/jobs/running").text


def test_a2_history_shows_state_trigger_actor_start_end_duration_counts_and_error(
    web: Web,
) -> None:
    """A2: every column of the History view, through the API and on the page, for a run that
    completed with counts and one that failed with an error."""
    with web.engine.begin() as conn:
        done, failed = (
            insert_run(
                conn,
                job=job,
                trigger=trigger,
                actor=actor,
                state=state,
                created_at=sa.text("now() - interval '10 minutes'"),
                started_at=sa.text("now() - interval '10 minutes'"),
                ended_at=sa.text("now() - interval '10 minutes' + interval '83.5 seconds'"),
                rows_read=read,
                rows_written=written,
                rows_discarded=discarded,
                warnings=warnings,
                error=error,
            )
            for job, trigger, actor, state, read, written, discarded, warnings, error in (
                (
                    "Job_TransformGIM",
                    "scheduled",
                    "scheduler",
                    "Completed with warnings",
                    1200,
                    1187,
                    13,
                    1,
                    None,
                ),
                (
                    "Job_ExportGIM",
                    "forced",
                    "admin",
                    "Failed",
                    0,
                    0,
                    0,
                    0,
                    "output directory /x is not writable",
                ),
            )
        )
    history = {r["id"]: r for r in web.api("viewer").get("/api/runs?which=history").json()}
    assert {
        k: history[done][k]
        for k in (
            "state",
            "trigger",
            "actor",
            "duration_seconds",
            "rows_read",
            "rows_written",
            "rows_discarded",
            "warnings",
            "error",
        )
    } == {
        "state": "Completed with warnings",
        "trigger": "scheduled",
        "actor": "scheduler",
        "duration_seconds": 83.5,
        "rows_read": 1200,
        "rows_written": 1187,
        "rows_discarded": 13,
        "warnings": 1,
        "error": None,
    }
    assert history[done]["started_at"] and history[done]["ended_at"]
    assert (history[failed]["state"], history[failed]["trigger"], history[failed]["error"]) == (
        "Failed",
        "forced",
        "output directory /x is not writable",
    )
    client, _ = web.session("viewer")
    page = client.get("/jobs/history").text
    for text in ("Completed with warnings", "scheduler", "1,187", "output directory /x is not"):
        assert text in page, text


def test_m8_every_start_stop_and_cancel_records_who_and_when(web: Web) -> None:
    """M8: who and when, for a manual start, a stop and a cancel (a scheduled start records
    `scheduler`: test_beat_tick, test_a2 above)."""
    from gim_tasks.runtime import manager

    started = manager.request_run(web.engine, "Job_MaintainGIM", "alice")
    waiting = manager.request_run(web.engine, "Job_ExtractICON", "bob")
    assert (started.state, waiting.state) == ("Running", "Scheduled")
    with web.engine.begin() as conn:
        conn.execute(
            sa.update(job_run)
            .where(job_run.c.id == started.run_id)
            .values(state="Running", started_at=sa.func.now(), dispatched_at=None)
        )
    manager.stop_run(web.engine, started.run_id, "carol")
    manager.cancel_run(web.engine, waiting.run_id, "dave")
    with web.engine.connect() as conn:
        rows = {
            r.id: r
            for r in conn.execute(
                sa.select(job_run).where(job_run.c.id.in_((started.run_id, waiting.run_id)))
            )
        }
    start, cancel = rows[started.run_id], rows[waiting.run_id]
    assert (start.actor, start.trigger, start.created_at is not None) == ("alice", "manual", True)
    assert (start.ended_by, start.stop_kind, start.stop_requested_at is not None) == (
        "carol",
        "operator",
        True,
    )
    assert (cancel.actor, cancel.state, cancel.ended_by) == ("bob", "Cancelled", "dave")
    assert cancel.ended_at is not None and cancel.ended_at >= cancel.created_at


def test_405_names_the_allowed_methods_in_allow(web: Web) -> None:
    """RFC 9110: a 405 carries Allow; the API's JSON error body and the pages' error page
    both keep it."""
    viewer = web.api("viewer")
    for method, path, allowed in (
        ("TRACE", "/api/summary", {"GET"}),
        ("DELETE", "/api/runs", {"GET", "POST"}),
        ("PUT", "/jobs/history", {"GET"}),
    ):
        reply = viewer.request(method, path)
        assert reply.status_code == 405, (method, path)
        assert set(reply.headers["allow"].replace(" ", "").split(",")) >= allowed, reply.headers
    assert "error" in viewer.request("TRACE", "/api/summary").json()


def test_r4_outcome_filter_in_sql_agrees_with_the_outcome_of_every_run(web: Web) -> None:
    """History's outcome filter (SQL) and the outcome each run shows (Python) are one rule:
    every valid state, stop kind and skip, filtered by each outcome."""
    from gim_tasks.lifecycle import RUN_STATES, SKIP_KINDS, STOP_KINDS, outcome

    combos = [(state, None, None) for state in RUN_STATES if state != "Stopped"]
    combos += [("Stopped", kind, None) for kind in STOP_KINDS]
    combos += [("Rejected", None, skip) for skip in SKIP_KINDS]
    with web.engine.begin() as conn:
        ids = {
            insert_run(
                conn,
                job="Job_ExportGIM",
                trigger="scheduled",
                actor="t",
                state=state,
                stop_kind=kind,
                skip=skip,
                ended_at=sa.func.now(),
            ): outcome(state, kind, skip)
            for state, kind, skip in combos
        }
    viewer = web.api("viewer")
    for name in ("success", "failure", "operator"):
        found = viewer.get("/api/runs", params={"outcome": name}).json()
        assert {r["id"] for r in found} == {i for i, o in ids.items() if o == name}
        assert all(r["outcome"] == name for r in found)
        # a rule's skip has no outcome: the skipped list filtered by any outcome is empty
        assert viewer.get("/api/runs", params={"outcome": name, "which": "skipped"}).json() == []


def test_a6_history_pages_sorts_several_states_and_a_date_range(web: Web) -> None:
    """A6: limit/offset pages with the total, sort by start or state, several states at once,
    a range of local days; the page shows the same and links the next page."""
    with web.engine.begin() as conn:
        made = []
        for number in range(12):
            state = ("Completed", "Failed", "Stopped")[number % 3]
            made.append(
                insert_run(
                    conn,
                    job="Job_ExtractICON",
                    trigger="scheduled",
                    actor="t",
                    state=state,
                    stop_kind="operator" if state == "Stopped" else None,
                    created_at=sa.text(f"now() - interval '{number} days'"),
                    started_at=sa.text(f"now() - interval '{number} days'"),
                    ended_at=sa.text(f"now() - interval '{number} days' + interval '1 min'"),
                )
            )
    viewer = web.api("viewer")
    first = viewer.get("/api/runs", params={"which": "history", "limit": 5})
    assert first.headers["X-Total-Count"] == "12"
    assert [r["id"] for r in first.json()] == made[:5]  # newest start first
    rest = viewer.get("/api/runs", params={"which": "history", "limit": 5, "offset": 10})
    assert [r["id"] for r in rest.json()] == made[10:]
    oldest = viewer.get("/api/runs", params={"sort": "started_at", "limit": 2}).json()
    assert [r["id"] for r in oldest] == made[::-1][:2]
    by_state = viewer.get("/api/runs", params={"sort": "state"}).json()
    assert [r["state"] for r in by_state] == sorted(r["state"] for r in by_state)
    two = viewer.get("/api/runs", params={"state": "Failed,Stopped"})
    assert two.headers["X-Total-Count"] == "8"
    assert {r["state"] for r in two.json()} == {"Failed", "Stopped"}
    days = viewer.get("/api/runs", params={"from": "2000-01-01", "to": "2000-01-31"})
    assert days.json() == [] and days.headers["X-Total-Count"] == "0"
    backwards = viewer.get("/api/runs", params={"from": "2026-02-01", "to": "2026-01-01"})
    assert backwards.status_code == 400 and "is after to" in backwards.json()["error"]
    naive = viewer.get("/api/runs", params={"ended_since": "2026-01-01T00:00:00"})
    assert naive.status_code == 400 and "UTC offset" in naive.json()["error"]

    client, _ = web.session("viewer")
    page = client.get("/jobs/history?state=Failed&state=Stopped&limit=25").text
    assert "Runs 1–8 of 8" in page and page.count('data-run="') == 8
    page = client.get("/jobs/history?limit=25&sort=started_at").text
    shown = re.findall(r'<tr class="[^"]*" data-run="(\d+)"', page)
    assert shown == [str(i) for i in made[::-1]]
    paged = client.get("/jobs/history?limit=5").text
    assert "Runs 1–5 of 12" in paged
    link = re.search(r'<a href="([^"]+)" id="page-next"', paged)
    assert link is not None
    second = client.get(html.unescape(link.group(1))).text
    assert "Runs 6–10 of 12" in second and 'id="page-previous"' in second
    bad = client.get("/jobs/history?state=Done")
    assert bad.status_code == 400 and "unknown state &#39;Done&#39;" in bad.text


def test_running_tab_filters_by_category_and_run_job_offers_only_startable_jobs(web: Web) -> None:
    """Issue 18 item 6: a category filter on Running; Run Job lists for an operator only the
    jobs M7 lets anyone start by hand, for an admin also the others, marked forced only."""
    with web.engine.begin() as conn:
        for job in ("Job_ExtractICON", "Job_MaintainGIM"):
            insert_run(
                conn,
                job=job,
                trigger="manual",
                actor="ops",
                state="Running",
                started_at=sa.func.now(),
            )
    client, _ = web.session("viewer")
    etl = client.get("/jobs/running?category=ETL").text
    assert (
        'data-run="' in etl and "Job_ExtractICON" in etl and "<td>Job_MaintainGIM</td>" not in etl
    )
    every = client.get("/jobs/running").text
    assert every.count('data-run="') == 2
    assert client.get("/jobs/running?category=Nope").status_code == 400

    def offered(role: str) -> list[str]:
        page = web.session(role)[0].get("/jobs/run").text
        return re.findall(r'<option value="([^"]+)"[^>]*>([^<]+)</option>', page)

    operator = offered("operator")
    assert [job for job, _ in operator] == [
        "Job_ExtractICON",
        "Job_TransformGIM",
        "Job_AggregateGIM",
        "Job_MaintainGIM",
    ]
    admin = dict(offered("admin"))
    assert admin["Job_UpdateStats"] == "Job_UpdateStats (forced only, M7)"
    assert admin["Job_ExportGIM"] == "Job_ExportGIM (forced only, M7)"
    assert admin["Job_ExtractICON"] == "Job_ExtractICON"


def test_a3_a_jobs_email_notifications_page_adds_users_and_addresses_and_saves_at_once(
    web: Web,
) -> None:
    """Alma's notification flow (issue 18 item 4): the Scheduled tab's row action opens the
    job's page; an admin adds a user (picked among those with an address) and an address,
    changes and removes subscribers, all in one Save; a bad address saves nothing."""
    auth.add_user(web.engine, "noaddr", "viewer", PASSWORD, "test")  # no e-mail address
    client, csrf = web.session("admin")
    scheduled = client.get("/jobs/scheduled").text
    assert 'href="/jobs/Job_ExportGIM/notifications"' in scheduled
    page = client.get("/jobs/Job_ExportGIM/notifications").text
    assert "Nobody is notified of this job." in page
    picker = re.search(r'<select name="add_user">(.*?)</select>', page, re.S)
    assert picker is not None
    offered = re.findall(r'<option value="(\w+)"', picker.group(1))
    assert offered == ["admin", "operator", "viewer"]  # the users with an address
    saved = client.post(
        "/jobs/Job_ExportGIM/notifications",
        data={
            "csrf": csrf,
            "add_user": "viewer",
            "add_user_success": "true",
            "add_user_error": "true",
            "add_email": "ops@example.com",
            "add_email_error": "true",
        },
        follow_redirects=True,
    )
    assert "saved: 2 added, 0 changed, 0 removed" in saved.text
    subscribed = {s["recipient"]: s for s in notify.list_subscriptions(web.engine, "Job_ExportGIM")}
    assert {k: (v["on_success"], v["on_error"]) for k, v in subscribed.items()} == {
        "viewer": (True, True),
        "ops@example.com": (False, True),
    }
    viewer_id, ops_id = subscribed["viewer"]["id"], subscribed["ops@example.com"]["id"]
    assert '<option value="viewer">' not in saved.text  # subscribed: no longer offered
    # viewer: success only; ops@example.com: removed (its error box stays ticked).
    changes = {
        "csrf": csrf,
        "sub": [str(viewer_id), str(ops_id)],
        f"success_{viewer_id}": "true",
        f"error_{ops_id}": "true",
        f"remove_{ops_id}": "true",
    }
    bad = {"add_email": "not an address", "add_email_error": "true"}
    page_url = "/jobs/Job_ExportGIM/notifications"
    refused = client.post(page_url, data={**changes, **bad}, follow_redirects=True)
    assert "not saved: recipient &#39;not an address&#39; is neither" in refused.text
    assert len(notify.list_subscriptions(web.engine, "Job_ExportGIM")) == 2  # nothing lost
    done = client.post(page_url, data=changes, follow_redirects=True)
    assert "saved: 0 added, 1 changed, 1 removed" in done.text
    (left,) = notify.list_subscriptions(web.engine, "Job_ExportGIM")
    assert (left["recipient"], left["on_success"], left["on_error"]) == ("viewer", True, False)
    # Another job's subscription cannot be edited through this page.
    other = notify.add_subscription(web.engine, "Job_MaintainGIM", "a@example.com", True, True, "t")
    sneaky = client.post(
        "/jobs/Job_ExportGIM/notifications",
        data={"csrf": csrf, "sub": [str(other)]},
        follow_redirects=True,
    )
    assert f"subscription {other} is not one of Job_ExportGIM" in sneaky.text
    assert len(notify.list_subscriptions(web.engine, "Job_MaintainGIM")) == 1
    viewer_page = web.session("viewer")[0].get("/jobs/Job_ExportGIM/notifications").text
    assert "save-notifications" not in viewer_page and "disabled" in viewer_page
    assert client.get("/jobs/Job_Nope/notifications").status_code == 404


def test_a5_dates_are_days_in_every_body_and_query_as_the_document_says(web: Web) -> None:
    """Issue 32: a number is never taken for a date (pydantic would read it as Unix time), in a
    body as in a query; days outside 1970-2999 and other forms are refused with the status the
    document gives (422 where its schema states the form, 400 where only the code can)."""
    admin = web.api("admin")
    for start in (0, 7735881, "1969-12-31", "3000-01-01", "2026-12-04T00:00:00", "20261204"):
        reply = admin.post("/api/schedule/preview", json={"values": {}, "start": start})
        assert reply.status_code == 422, (start, reply.text)
        assert "a day YYYY-MM-DD from 1970 to 2999" in reply.json()["error"], reply.text
    assert admin.post(
        "/api/schedule/preview", json={"start": "2026-12-04", "values": {}}
    ).is_success
    viewer = web.api("viewer")
    for wrong in ("2026-12-04 10:00", "0", "1969-12-31", "2026-12-04T10"):
        reply = viewer.get("/api/firings", params={"from": wrong})
        assert reply.status_code == 422, (wrong, reply.text)
    assert viewer.get("/api/firings", params={"from": "2026-02-30"}).status_code == 400
    assert viewer.get("/api/timeline", params={"start": "1969-12-31"}).status_code == 400
    assert viewer.get("/api/runs", params={"to": "9999-12-31"}).status_code == 400  # was a 500
    # Options a preview does not know, and values its pattern refuses, never reach the plan.
    unknown = admin.post("/api/schedule/preview", json={"values": {"no-such-option": "1"}})
    assert unknown.status_code == 400 and "no-such-option" in unknown.json()["error"]


def test_a5_out_of_range_dates_on_pages_and_api_are_refused_never_a_500(web: Web) -> None:
    """Issue 41: the dates a live probe found answered 500 are refused, naming the range."""
    viewer, _ = web.session("viewer")
    admin, _ = web.session("admin")
    api = web.api("viewer")
    for client, path in (
        (api, "/api/runs?to=9999-12-31"),
        (api, "/api/runs?date=9999-12-31"),
        (api, "/api/runs?ended_since=9999-12-31T23:59:59-14:00"),
        (api, "/api/firings?from=0001-01-01"),
        (viewer, "/jobs/history?to=9999-12-31"),
        (viewer, "/jobs/history?from=0001-01-01"),
        (admin, "/options/preview?day=1969-12-31"),
        (viewer, "/timeline?start=0001-01-01"),
    ):
        reply = client.get(path)
        assert 400 <= reply.status_code < 500, (path, reply.status_code, reply.text[:300])
