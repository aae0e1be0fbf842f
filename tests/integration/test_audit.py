"""SPEC P6, P7 with real PostgreSQL and Redis: every mutating action of every channel writes
exactly one audit row, with its actor and channel, and no secret; the trail is append-only for
every role; notes and acknowledgement (issue 38).

The web app runs as the least-privilege web role (as in production). Its routes are taken from
the app (the OpenAPI document for the API, the hidden POST routes for the page forms) and the
command line's from the Typer app: a mutating route or command added without a case here fails
the enumeration tests, which perform each one once with valid input.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click
import pytest
import sqlalchemy as sa
import typer.main
from conftest import Smtp, insert_run
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from gim_tasks.cli.main import app as cli_app
from gim_tasks.cli.main import main as gim
from gim_tasks.db import migrate
from gim_tasks.db.engine import make_engine
from gim_tasks.db.tables import ROLES, audit_event, incident, note, notification
from gim_tasks.lifecycle import Channel
from gim_tasks.monitor import audit, incidents, notes
from gim_tasks.options import store
from gim_tasks.runtime import holds, run_at, tasks
from gim_tasks.schedule import plan
from gim_tasks.schedule.firings import firing_id
from gim_tasks.schedule.holds import Blackout
from gim_tasks.settings import get_settings
from gim_tasks.web import auth
from gim_tasks.web.app import create_app
from gim_tasks.web.errors import every_route

PASSWORD = "correct horse 1"
STATS, EXPORT, EXTRACT = "Job_UpdateStats", "Job_ExportGIM", "Job_ExtractICON"


class World:
    """The owner's engine (set-up, reading the trail), the web app as the web role, users of
    every role with tokens."""

    def __init__(self, owner: sa.Engine, web: sa.Engine) -> None:
        self.owner, self.web = owner, web
        self.app = create_app(get_settings(), web)
        self.tokens = {role: auth.create_token(owner, role, actor="setup") for role in ROLES}
        self.secrets = [PASSWORD, *self.tokens.values()]

    def api(self, role: str) -> TestClient:
        client = TestClient(self.app, base_url="http://testserver", follow_redirects=False)
        client.headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return client

    def session(self, role: str) -> tuple[TestClient, str]:
        client = TestClient(self.app, base_url="http://testserver", follow_redirects=False)
        csrf = _csrf(client.get("/login").text)
        reply = client.post("/login", data={"name": role, "password": PASSWORD, "csrf": csrf})
        assert reply.status_code == 303, reply.text
        return client, _csrf(client.get("/jobs/scheduled").text)

    def newest(self) -> int:
        with self.owner.connect() as conn:
            if conn.execute(sa.text("SELECT to_regclass('audit_event')")).scalar() is None:
                return 0  # downgraded below the trail (the `db upgrade` case)
            return int(
                conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(audit_event.c.id), 0))
                ).scalar_one()
            )

    def since(self, mark: int) -> list[sa.Row[Any]]:
        with self.owner.connect() as conn:
            return list(
                conn.execute(sa.select(audit_event).where(audit_event.c.id > mark).order_by("id"))
            )

    def reset(self) -> None:
        """The state a case sets up is its own: operator tables emptied (never the trail)."""
        with self.owner.begin() as conn:
            conn.execute(
                sa.text(
                    "TRUNCATE job_run, run_at, job_pause, firing_skip, blackout, "
                    "notification_subscription, webhook, incident, firing, note, "
                    "quality_check CASCADE"
                )
            )


def _csrf(text: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found, text[:300]
    return found.group(1)


@pytest.fixture
def world(gim_env: dict[str, str], web_role_url: str) -> Iterator[World]:
    owner = make_engine(gim_env["GIM_DATABASE_URL"])
    for role in ROLES:
        auth.add_user(owner, role, role, PASSWORD, "setup", email=f"{role}@example.com")
    web = make_engine(web_role_url)
    yield World(owner, web)
    web.dispose()
    owner.dispose()


# ----- set-ups: each returns what the call needs (ids), made as the owner --------------------


def running_run(w: World, job: str = STATS) -> int:
    with w.owner.begin() as conn:
        return insert_run(
            conn, job=job, state="Running", trigger="manual", actor="setup",
            started_at=sa.func.now(), heartbeat_at=sa.func.now(), dispatched_at=sa.func.now(),
        )  # fmt: skip


def scheduled_run(w: World, job: str = STATS) -> int:
    with w.owner.begin() as conn:
        return insert_run(conn, job=job, state="Scheduled", trigger="manual", actor="setup")


def next_firing(w: World, job: str = EXTRACT) -> str:
    with w.owner.connect() as conn:
        options = store.load_options(conn).schedule()
    now = datetime.now(UTC)
    starts = [e.at for e in plan.plan(options, now + timedelta(minutes=5), now + timedelta(days=2))
              if e.job == job and e.event == "start"]  # fmt: skip
    return firing_id(job, starts[0])


def paused(w: World, job: str = EXTRACT) -> None:
    holds.pause(w.owner, job, "set-up", "setup")


def a_blackout(w: World) -> str:
    holds.add_blackout(w.owner, Blackout("w1", "month-end", days=1, reason="set-up"), "setup")
    return "w1"


def tomorrow() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).isoformat()


def planned(w: World) -> str:
    at = datetime.now(UTC) + timedelta(days=1)
    return run_at.plan_run(w.owner, EXTRACT, at, "set-up", "setup")


def subscription(w: World) -> int:
    from gim_tasks.monitor import notify

    return notify.add_subscription(w.owner, EXPORT, "s@example.com", True, True, "setup")


def open_incident(w: World) -> int:
    with w.owner.begin() as conn:
        found = incidents.open_incident(conn, EXPORT, "failure", "set-up")
    assert found is not None
    return found


def a_firing(w: World) -> str:
    return planned(w)  # a planned run's firing id is a ledger row


def webhook(w: World) -> int:
    from gim_tasks.monitor import alerts

    return alerts.add_webhook(w.owner, "http://127.0.0.1:9/hook/secret-part", [], "setup")


def failing_check(w: World) -> None:
    """A failing error verdict of discard-ratio on 2026-11-23 (Q3), as the export job writes."""
    with w.owner.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO quality_check (name, subject, day, start_ts, end_ts, severity, "
                "passed, measured, bound, detail) VALUES ('discard-ratio', 'idb 1 f', "
                "'2026-11-23', '2026-11-23T09:00Z', '2026-11-23T10:00Z', 'error', false, "
                "'20%', '<= 5%', 'set-up')"
            )
        )


OVERRIDE = {"day": "2026-11-23", "check": "discard-ratio", "reason": "r"}


def _past_days() -> tuple[str, str]:
    today = datetime.now(UTC).date()
    return (today - timedelta(days=3)).isoformat(), (today - timedelta(days=2)).isoformat()


BACKFILL = {"from": _past_days()[0], "to": _past_days()[1], "steps": ["aggregate"],
            "reprocess": "all", "reason": "r"}  # fmt: skip


def past_calendar(w: World) -> None:
    """DATE_TIME over the last days (the template's starts today): D5 refuses a back-fill of
    days outside it."""
    from gim_tasks.db.calendar import fill_range, key_of

    now = datetime.now(UTC)
    with w.owner.begin() as conn:
        tz = store.load_options(conn).text("schedule", "timezone")
        fill_range(conn, tz, key_of(now - timedelta(days=10)), key_of(now))


def a_backfill(w: World, pause: bool = False) -> int:
    """An active back-fill of two past days (B1); ``pause``: paused."""
    from gim_tasks.runtime import backfills
    from gim_tasks.schedule.backfill import Request

    past_calendar(w)
    first, last = (date.fromisoformat(d) for d in _past_days())
    made = backfills.create(w.owner, Request(first, last, ("aggregate",), "all", reason="r"),
                            "setup")["id"]  # fmt: skip
    if pause:
        backfills.change(w.owner, made, "pause", "setup")
    return int(made)


# ----- the API: every mutating operation of the OpenAPI document --------------------------------

#: (method, path) -> (set-up, path values, body). The set-up runs first; its result is ``x``.
API: dict[tuple[str, str], tuple[Callable[[World], Any], Callable[[Any], dict[str, Any]], Any]] = {
    ("POST", "/api/runs"): (lambda w: None, lambda x: {}, {"job": "Job_MaintainGIM"}),
    ("POST", "/api/runs/{run_id}/stop"): (running_run, lambda x: {"run_id": x}, None),
    ("POST", "/api/runs/{run_id}/cancel"): (scheduled_run, lambda x: {"run_id": x}, None),
    ("PUT", "/api/options/{section}/{name}"): (
        lambda w: None, lambda x: {"section": "schedule", "name": "run-export"}, {"value": "false"},
    ),
    ("DELETE", "/api/options/{section}/{name}"): (
        lambda w: None, lambda x: {"section": "schedule", "name": "run-export"}, None,
    ),
    ("POST", "/api/notifications"): (
        lambda w: None, lambda x: {}, {"job": EXPORT, "recipient": "a@example.com"},
    ),
    ("DELETE", "/api/notifications/{subscription_id}"): (
        subscription, lambda x: {"subscription_id": x}, None,
    ),
    ("POST", "/api/jobs/{job}/pause"): (
        lambda w: None, lambda x: {"job": EXTRACT}, {"reason": "r"},
    ),
    ("POST", "/api/pause"): (lambda w: None, lambda x: {}, {"reason": "r"}),
    ("POST", "/api/jobs/{job}/resume"): (paused, lambda x: {"job": EXTRACT}, None),
    ("POST", "/api/resume"): (
        lambda w: holds.pause(w.owner, None, "r", "setup"), lambda x: {}, None,
    ),
    ("POST", "/api/jobs/{job}/skip"): (
        next_firing, lambda x: {"job": EXTRACT}, lambda x: {"reason": "r", "firing_id": x},
    ),
    ("POST", "/api/blackouts"): (
        lambda w: None, lambda x: {}, {"name": "w", "kind": "month-end", "days": 2, "reason": "r"},
    ),
    ("DELETE", "/api/blackouts/{name}"): (a_blackout, lambda x: {"name": x}, None),
    ("POST", "/api/planned-runs"): (
        lambda w: None, lambda x: {},
        lambda x: {"job": EXTRACT, "at": tomorrow(), "reason": "r"},
    ),
    ("DELETE", "/api/planned-runs/{firing_id}"): (planned, lambda x: {"firing_id": x}, None),
    ("POST", "/api/runs/{run_id}/notes"): (running_run, lambda x: {"run_id": x}, {"text": "n"}),
    ("POST", "/api/firings/{firing_id}/notes"): (
        a_firing, lambda x: {"firing_id": x}, {"text": "n"},
    ),
    ("POST", "/api/incidents/{incident_id}/notes"): (
        open_incident, lambda x: {"incident_id": x}, {"text": "n"},
    ),
    ("POST", "/api/incidents/{incident_id}/ack"): (
        open_incident, lambda x: {"incident_id": x}, {},
    ),
    ("POST", "/api/checks/override"): (failing_check, lambda x: {}, OVERRIDE),
    ("POST", "/api/backfills"): (past_calendar, lambda x: {}, BACKFILL),
    ("POST", "/api/backfills/{backfill_id}/pause"): (a_backfill, lambda x: {"backfill_id": x},
                                                     None),
    ("POST", "/api/backfills/{backfill_id}/resume"): (
        lambda w: a_backfill(w, pause=True), lambda x: {"backfill_id": x}, None,
    ),
    ("POST", "/api/backfills/{backfill_id}/cancel"): (a_backfill, lambda x: {"backfill_id": x},
                                                      None),
}  # fmt: skip
#: Operations that change nothing (a preview computes a plan).
API_READ_ONLY = {("POST", "/api/schedule/preview")}

ACTIONS = {
    "/api/runs": "run", "stop": "stop", "cancel": "cancel", "options": "option-set",
    "notifications": "subscription-save", "pause": "pause", "resume": "resume", "skip": "skip",
    "blackouts": "blackout-add", "planned-runs": "plan-run", "notes": "note", "ack": "incident-ack",
    "override": "check-override",
}  # fmt: skip


def _mutating_operations(app: Any) -> set[tuple[str, str]]:
    document = app.openapi()
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in ("post", "put", "patch", "delete")
    } - API_READ_ONLY


def test_p6_the_api_case_list_is_every_mutating_operation(world: World) -> None:
    assert set(API) == _mutating_operations(world.app)


def test_p6_every_mutating_api_operation_writes_one_audit_row(world: World) -> None:
    """One loop, not one test per operation: a world (database, users, web role) costs more
    than the twenty calls."""
    client = world.api("admin")
    for number, ((method, path), (setup, where, body)) in enumerate(sorted(API.items())):
        world.reset()
        made = setup(world)
        mark = world.newest()
        payload = body(made) if callable(body) else body
        request_id = f"req-p6-{number}"
        reply = client.request(
            method, path.format(**where(made)), json=payload, headers={"X-Request-ID": request_id}
        )
        assert reply.status_code < 300, (method, path, reply.text)
        assert reply.headers["x-request-id"] == request_id
        rows = world.since(mark)
        assert len(rows) == 1, (method, path, [(r.action, r.target) for r in rows])
        row = rows[0]
        assert (row.actor, row.role, row.channel, row.request_id, row.client) == (
            "admin", "admin", "api", request_id, "testclient",
        ), (method, path)  # fmt: skip
        assert row.action in audit.ACTIONS
        if method == "DELETE":
            assert row.action.endswith("remove") or row.action in ("option-unset", "cancel-planned")
    # A request id that is not a plain token is replaced, never stored as sent.
    reply = client.get("/api/me", headers={"X-Request-ID": "bad id\twith tab"})
    assert re.fullmatch(r"[0-9a-f]{32}", reply.headers["x-request-id"])


# ----- the page forms ------------------------------------------------------------------------

Form = Callable[[Any], dict[str, str]]
PAGES: dict[str, tuple[Callable[[World], Any], Callable[[Any], dict[str, Any]], Form]] = {
    "/jobs/run": (lambda w: None, lambda x: {}, lambda x: {"job": STATS}),
    "/runs/{run_id}/stop": (running_run, lambda x: {"run_id": x}, lambda x: {}),
    "/runs/{run_id}/cancel": (scheduled_run, lambda x: {"run_id": x}, lambda x: {}),
    "/jobs/{job}/pause": (lambda w: None, lambda x: {"job": EXTRACT}, lambda x: {"reason": "r"}),
    "/jobs/{job}/resume": (paused, lambda x: {"job": EXTRACT}, lambda x: {}),
    "/planned-runs/cancel": (planned, lambda x: {}, lambda x: {"firing_id": x}),
    "/blackouts": (lambda w: None, lambda x: {},
                   lambda x: {"name": "w", "kind": "month-end", "days": "2", "reason": "r"}),
    "/blackouts/delete": (a_blackout, lambda x: {}, lambda x: {"name": x}),
    "/options": (lambda w: None, lambda x: {},
                 lambda x: {"section": "schedule", "name": "run-export", "value": "false"}),
    "/notifications": (lambda w: None, lambda x: {},
                       lambda x: {"job": EXPORT, "recipient": "a@example.com",
                                  "on_error": "true"}),
    "/jobs/{job}/notifications": (lambda w: None, lambda x: {"job": EXPORT},
                                  lambda x: {"add_email": "b@example.com",
                                             "add_email_error": "true"}),
    "/notifications/{subscription_id}/delete": (subscription, lambda x: {"subscription_id": x},
                                                lambda x: {}),
    "/notes": (running_run, lambda x: {},
               lambda x: {"kind": "run", "target": str(x), "text": "n"}),
    "/alerts/{incident_id}/ack": (open_incident, lambda x: {"incident_id": x},
                                  lambda x: {"note": "seen"}),
    "/days/override": (failing_check, lambda x: {}, lambda x: OVERRIDE),
    "/backfills": (past_calendar, lambda x: {},
                   lambda x: {"first": BACKFILL["from"], "last": BACKFILL["to"],
                              "steps": "aggregate", "reprocess": "all", "reason": "r"}),
    "/backfills/{backfill_id}/{action}": (a_backfill,
                                          lambda x: {"backfill_id": x, "action": "pause"},
                                          lambda x: {}),
}  # fmt: skip
#: Forms audited by tests of their own below.
PAGES_ELSEWHERE = {"/login", "/logout"}


def _forms(app: Any) -> set[str]:
    return {
        route.path
        for route in every_route(app)
        if isinstance(route, APIRoute) and not route.include_in_schema and "POST" in route.methods
    }


def test_p6_the_page_case_list_is_every_form(world: World) -> None:
    assert set(PAGES) | PAGES_ELSEWHERE == _forms(world.app)


def test_p6_every_page_form_writes_one_audit_row(world: World) -> None:
    client, csrf = world.session("admin")
    for path, (setup, where, form) in PAGES.items():
        world.reset()
        made = setup(world)
        mark = world.newest()
        reply = client.post(path.format(**where(made)), data={**form(made), "csrf": csrf})
        assert reply.status_code in (200, 303), (path, reply.text[:300])
        rows = world.since(mark)
        # The ack with a note writes its note too (two actions, one form): one row each.
        expected = 2 if path == "/alerts/{incident_id}/ack" else 1
        assert len(rows) == expected, (path, [(r.action, r.target, r.after) for r in rows])
        assert {(r.actor, r.role, r.channel) for r in rows} == {("admin", "admin", "web")}, path
        assert all(r.request_id and r.client == "testclient" for r in rows), path


def test_p6_login_logout_and_a_failed_login_are_audited_without_the_password(world: World) -> None:
    mark = world.newest()
    client, csrf = world.session("operator")
    client.post("/logout", data={"csrf": csrf})
    other = TestClient(world.app, base_url="http://testserver", follow_redirects=False)
    token = _csrf(other.get("/login").text)
    refused = other.post(
        "/login", data={"name": "operator", "password": "wrong " + PASSWORD, "csrf": token}
    )
    assert refused.status_code == 401
    rows = world.since(mark)
    assert [(r.action, r.actor, r.role, r.channel) for r in rows] == [
        ("login", "operator", "operator", "web"),
        ("logout", "operator", "operator", "web"),
        ("login-failed", "operator", "unauthenticated", "web"),
    ]
    assert rows[2].reason == "wrong user name or password"
    _no_secret(world)


# ----- the command line --------------------------------------------------------------------


def _commands() -> set[str]:
    root = typer.main.get_command(cli_app)
    found: set[str] = set()

    def walk(command: Any, prefix: list[str]) -> None:
        if hasattr(command, "list_commands"):  # a group (typer bundles its own click)
            context = click.Context(command)
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                assert sub is not None
                walk(sub, [*prefix, name])
            if not getattr(command, "invoke_without_command", False):
                return
        found.add(" ".join(prefix))

    walk(root, [])
    found.discard("")
    return found


#: Commands that change nothing an operator decides (reads, processes, the IDB simulator's
#: tools, mail delivery), with why.
CLI_NOT_AUDITED = {
    "version", "status", "jobs", "holds", "firings", "alerts", "audit", "days", "blackout list",
    "config show", "config export", "config check", "config history", "config reference",
    "schedule plan", "schedule next", "etl status", "export status", "aggregate status",
    "aggregate verify", "user list", "token list", "notify list", "webhook list", "db check",
    "checks", "backfill list", "backfill show",
    # judges the quality checks (data, not a decision; the override of a verdict is audited)
    "check run",
    # processes: what they do is audited where it happens (runs, the beat's decisions)
    "web", "web-secret", "worker", "beat", "watchdog",
    # the IDB simulator writes source data, not the mart's decisions
    "idb init", "idb generate", "idb simulate",
    # delivers the mails already due (the runs that queued them are audited)
    "notify send",
}  # fmt: skip

#: command -> (set-up, argv from the set-up's result, expected action).
CLI: dict[str, tuple[Callable[[World], Any], Callable[[Any], list[str]], str]] = {
    "run": (lambda w: None, lambda x: ["run", STATS], "run"),
    "stop": (running_run, lambda x: ["stop", str(x)], "stop"),
    "cancel": (scheduled_run, lambda x: ["cancel", str(x)], "cancel"),
    "pause": (lambda w: None, lambda x: ["pause", EXTRACT, "--reason", "r"], "pause"),
    "resume": (paused, lambda x: ["resume", EXTRACT], "resume"),
    "skip": (next_firing, lambda x: ["skip", EXTRACT, "--reason", "r", "--firing", x], "skip"),
    "blackout add": (lambda w: None,
                     lambda x: ["blackout", "add", "w", "--month-end", "2", "--reason", "r"],
                     "blackout-add"),
    "blackout remove": (a_blackout, lambda x: ["blackout", "remove", x], "blackout-remove"),
    "config set": (lambda w: None, lambda x: ["config", "set", "schedule", "run-export", "false"],
                   "option-set"),
    "config unset": (lambda w: None, lambda x: ["config", "unset", "schedule", "run-export"],
                     "option-unset"),
    "config import": (lambda w: None, lambda x: ["config", "import", str(x)], "option-import"),
    "user add": (lambda w: None, lambda x: ["user", "add", "zed", "--role", "viewer",
                                            "--password-stdin"], "user-add"),
    "user update": (lambda w: None, lambda x: ["user", "update", "viewer", "--email",
                                               "v2@example.com"], "user-update"),
    "user remove": (lambda w: auth.add_user(w.owner, "gone", "viewer", PASSWORD, "setup"),
                    lambda x: ["user", "remove", "gone"], "user-remove"),
    "token create": (lambda w: None, lambda x: ["token", "create", "viewer"], "token-create"),
    "token revoke": (lambda w: auth.list_tokens(w.owner, "viewer")[0]["id"],
                     lambda x: ["token", "revoke", str(x)], "token-revoke"),
    "notify add": (lambda w: None, lambda x: ["notify", "add", EXPORT, "n@example.com"],
                   "subscription-save"),
    "notify remove": (subscription, lambda x: ["notify", "remove", str(x)], "subscription-remove"),
    "webhook add": (lambda w: None, lambda x: ["webhook", "add", "http://127.0.0.1:9/h/tok"],
                    "webhook-add"),
    "webhook remove": (webhook, lambda x: ["webhook", "remove", str(x)], "webhook-remove"),
    "alerts ack": (open_incident, lambda x: ["alerts", "ack", str(x)], "incident-ack"),
    "note": (running_run, lambda x: ["note", "run", str(x), "looked at it"], "note"),
    "check override": (failing_check,
                       lambda x: ["check", "override", "2026-11-23", "discard-ratio", "--reason",
                                  "r"], "check-override"),
    "aggregate once": (lambda w: None, lambda x: ["aggregate", "once"], "run"),
    "backfill create": (past_calendar,
                        lambda x: ["backfill", "create", "--from", BACKFILL["from"], "--to",
                                   BACKFILL["to"], "--steps", "aggregate", "--reprocess", "all",
                                   "--reason", "r"], "backfill-create"),
    "backfill pause": (a_backfill, lambda x: ["backfill", "pause", str(x)], "backfill-pause"),
    "backfill resume": (lambda w: a_backfill(w, pause=True),
                        lambda x: ["backfill", "resume", str(x)], "backfill-resume"),
    "backfill cancel": (a_backfill, lambda x: ["backfill", "cancel", str(x)], "backfill-cancel"),
    "db upgrade": (lambda w: migrate.downgrade(w.owner, "0018"), lambda x: ["db", "upgrade"],
                   "schema-upgrade"),
    "db grant-web": (lambda w: w.web.url.username, lambda x: ["db", "grant-web", str(x)],
                     "grant-web"),
}  # fmt: skip


def test_p6_every_command_is_either_audited_or_says_why_not() -> None:
    assert set(CLI) | CLI_NOT_AUDITED == _commands()
    assert not set(CLI) & CLI_NOT_AUDITED


def test_p6_every_mutating_command_writes_one_audit_row(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GIM_ACTOR", "carol")
    ini = tmp_path / "options.ini"
    ini.write_text("[schedule]\nrun-export = false\netl-frequency = 20\n")
    shown: list[str] = []
    for command, (setup, argv, action) in CLI.items():
        if command == "db upgrade":  # its set-up's downgrade drops the trail: look now
            _no_secret(world, "".join(shown))
        world.reset()
        made = setup(world)
        if command == "config import":
            made = ini
        if command == "user add":
            monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        mark = world.newest()
        code = gim(argv(made))
        printed = capsys.readouterr()
        shown.append(printed.out)
        assert code in (0, 1), (command, code, printed.err)  # 1: a run admitted but refused
        rows = world.since(mark)
        assert [(r.action, r.actor, r.channel) for r in rows] == [(action, "carol", "cli")], (
            command, printed.err,
        )  # fmt: skip
        assert rows[0].role == "gim"  # the database role the command line connects as


def test_p6_a_schema_upgrade_at_head_is_no_change(world: World) -> None:
    mark = world.newest()
    migrate.upgrade(world.owner)
    assert world.since(mark) == []


# ----- celery call and the beat -------------------------------------------------------------


def test_p6_a_celery_call_names_its_sender_or_says_unnamed(world: World) -> None:
    mark = world.newest()
    named = tasks.run_job(EXPORT, task_id=None, actor="dora")
    unnamed = tasks.run_job(STATS, task_id=None)
    rows = world.since(mark)
    assert [(r.action, r.actor, r.channel, r.target) for r in rows] == [
        ("run", "dora", "celery", EXPORT),
        ("run", "celery (unnamed)", "celery", STATS),
    ]
    with world.owner.connect() as conn:
        actors = conn.execute(sa.text("SELECT id, actor FROM job_run ORDER BY id")).all()
    assert [a.actor for a in actors] == ["dora", "celery (unnamed)"]
    assert named["run_id"] == actors[0].id and unnamed["run_id"] == actors[1].id
    bad = tasks.run_job(EXPORT, task_id=None, actor="x" * 65)
    assert "actor must be a name" in bad["reason"] or bad["state"] == "Rejected"


def test_p6_a_bad_actor_in_a_task_message_is_refused_naming_it() -> None:
    problem = tasks.bad_arguments((), {"actor": "robert'); DROP"})
    assert problem is not None and "actor must be a name" in problem
    assert tasks.bad_arguments((), {"actor": "ops.team@example.com"}) is None


def test_p6_the_beats_own_decisions_are_audited_as_the_beat(world: World) -> None:
    """A pause that reaches its until ends by the beat's doing: channel beat."""
    now = datetime.now(UTC)
    holds.pause(world.owner, EXTRACT, "until soon", "erin", until=now + timedelta(seconds=30))
    mark = world.newest()
    with audit.origin(Channel.BEAT), world.owner.begin() as conn:
        holds.expire(conn, now + timedelta(minutes=1))
    rows = world.since(mark)
    assert [(r.action, r.actor, r.channel, r.target) for r in rows] == [
        ("pause-ended", "gim-tasks", "beat", EXTRACT)
    ]
    assert rows[0].before["actor"] == "erin"


# ----- append-only, no secrets ---------------------------------------------------------------


def _no_secret(world: World, printed: str = "") -> None:
    """No password, token (those made for the test and any ``gim token create`` printed) or
    webhook path is in any audit row."""
    with world.owner.connect() as conn:
        rows = conn.execute(sa.select(audit_event)).all()
    text = json.dumps([dict(r._mapping) for r in rows], default=str)
    assert len(rows) > 5
    made = re.findall(r"gim_[A-Za-z0-9_-]{40,}", printed)
    assert made or not printed  # `token create` printed one
    for secret in [*world.secrets, *made]:
        assert secret not in text
    assert "secret-part" not in text and "/h/tok" not in text  # webhook URLs: host only
    assert "password_hash" not in text and "$argon2" not in text


@pytest.mark.parametrize("who", ["owner", "web"])
def test_p6_no_role_can_update_delete_or_truncate_the_trail(world: World, who: str) -> None:
    engine = world.owner if who == "owner" else world.web
    audit.record_now(engine, audit.Action.NOTE, "x", "tester")  # each role may insert
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_event)).scalar_one() > 0
    for statement in (
        "UPDATE audit_event SET actor = 'someone else'",
        "DELETE FROM audit_event",
        "TRUNCATE audit_event",
    ):
        with pytest.raises(sa.exc.DBAPIError, match="append-only|permission denied"):
            with engine.begin() as conn:
                conn.execute(sa.text(statement))
    with world.owner.connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(audit_event)
                .where(audit_event.c.actor == "someone else")
            ).scalar_one()
            == 0
        )


def test_p6_the_api_and_the_page_list_the_trail_for_admins_only(world: World) -> None:
    for n in range(3):
        holds.pause(world.owner, EXTRACT, f"reason {n}", "frank")
    reply = world.api("admin").get("/api/audit", params={"actor": "frank", "limit": 2})
    assert reply.status_code == 200
    page = reply.json()
    assert [e["reason"] for e in page["events"]] == ["reason 2", "reason 1"]
    older = (
        world.api("admin")
        .get("/api/audit", params={"actor": "frank", "limit": 2, "before": page["next_before"]})
        .json()
    )
    assert [e["reason"] for e in older["events"]] == ["reason 0"] and older["next_before"] is None
    assert world.api("operator").get("/api/audit").status_code == 403
    bad = world.api("admin").get("/api/audit", params={"action": "explode"})
    assert bad.status_code == 422 and "query.action: Input should be 'run'" in bad.json()["error"]
    client, _ = world.session("admin")
    text = client.get("/audit", params={"action": "pause"}).text
    assert text.count('data-action="pause"') == 3 and "frank" in text
    operator, _ = world.session("operator")
    assert operator.get("/audit").status_code == 403


def test_p6_a_refused_change_leaves_no_audit_row(world: World) -> None:
    mark = world.newest()
    with pytest.raises(Exception, match="not paused"):
        holds.resume(world.owner, EXTRACT, "gina")
    reply = world.api("admin").put("/api/options/schedule/etl-frequency", json={"value": "-3"})
    assert reply.status_code == 400
    assert world.since(mark) == []


# ----- notes and acknowledgement (P7) ------------------------------------------------------


def test_p7_notes_show_on_the_run_page_history_timeline_and_api(world: World) -> None:
    with world.owner.begin() as conn:
        run_id = insert_run(
            conn, job=STATS, state="Completed", trigger="manual", actor="setup",
            started_at=sa.func.now() - timedelta(minutes=2), ended_at=sa.func.now(),
        )  # fmt: skip
    notes.add_note(world.owner, "run", run_id, "known: the IDB was restarted", "hank")
    detail = world.api("viewer").get(f"/api/runs/{run_id}").json()
    assert [(n["actor"], n["text"]) for n in detail["notes"]] == [
        ("hank", "known: the IDB was restarted")
    ]
    listed = world.api("viewer").get("/api/runs").json()
    assert [r["note_count"] for r in listed if r["id"] == run_id] == [1]
    client, _ = world.session("viewer")
    assert "known: the IDB was restarted" in client.get(f"/runs/{run_id}").text
    history = client.get("/jobs/history").text
    assert 'class="note-icon"' in history
    timeline = world.api("viewer").get("/api/timeline").json()
    items = [i for lane in timeline["lanes"] for i in lane["items"] if i["run_id"] == run_id]
    assert items and items[0]["notes"] == ["hank: known: the IDB was restarted"]
    # A missed firing's note shows on the Alerts page, with a note box for operators.
    with world.owner.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO firing (firing_id, stream, job, planned_at, verdict, decided_at) "
                "VALUES ('f-1', 'export', :j, now() - interval '1 hour', 'missed', now())"
            ),
            {"j": EXPORT},
        )
    notes.add_note(world.owner, "firing", "f-1", "the beat host was rebooted", "hank")
    operator, _ = world.session("operator")
    alerts_page = operator.get("/alerts").text
    assert "the beat host was rebooted" in alerts_page
    assert 'name="kind" value="firing"' in alerts_page and 'value="f-1"' in alerts_page
    with pytest.raises(Exception, match="run 999999 does not exist"):
        notes.add_note(world.owner, "run", 999999, "x", "hank")
    with pytest.raises(Exception, match="needs text"):
        notes.add_note(world.owner, "run", run_id, "   ", "hank")
    with pytest.raises(Exception, match="run, firing or incident"):
        notes.add_note(world.owner, "job", run_id, "x", "hank")


def test_p7_ack_mutes_the_repeat_error_letters_until_the_incident_resolves(world: World) -> None:
    from gim_tasks.monitor import notify

    notify.add_subscription(world.owner, EXPORT, "ops@example.com", True, True, "setup")
    incident_id = open_incident(world)

    def fail_a_run() -> int:
        run_id = running_run(world, EXPORT)
        with world.owner.begin() as conn:
            conn.execute(
                sa.text("UPDATE job_run SET state = 'Failed', ended_at = now() WHERE id = :i"),
                {"i": run_id},
            )
        return run_id

    def letters(run_id: int) -> int:
        with world.owner.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(notification)
                    .where(notification.c.run_id == run_id)
                ).scalar_one()
            )

    assert letters(fail_a_run()) == 1  # not acknowledged: the error letter goes
    reply = world.api("operator").post(f"/api/incidents/{incident_id}/ack", json={"note": "on it"})
    assert reply.status_code == 200, reply.text
    assert letters(fail_a_run()) == 0  # acknowledged: its repeat is muted
    again = world.api("operator").post(f"/api/incidents/{incident_id}/ack", json={})
    assert again.status_code == 409 and "acknowledged by operator" in again.json()["error"]
    listed = world.api("viewer").get("/api/alerts").json()
    shown = next(i for i in listed if i["incident"] == incident_id)
    assert shown["acknowledged_by"] == "operator" and shown["notes"][0]["text"] == "on it"
    with world.owner.begin() as conn:
        incidents.resolve(conn, "failure", jobs=[EXPORT])
    assert letters(fail_a_run()) == 1  # resolved: letters go again
    gone = world.api("operator").post(f"/api/incidents/{incident_id}/ack", json={})
    assert gone.status_code == 409 and "resolved already" in gone.json()["error"]


def test_p7_an_incident_mail_after_a_note_carries_it(world: World, smtp: Smtp) -> None:
    from gim_tasks.monitor import alerts

    auth.update_user(world.owner, "admin", email="admin@example.com", actor="setup")
    from gim_tasks.monitor import notify

    notify.add_subscription(world.owner, EXPORT, "admin", False, True, "setup")
    with world.owner.begin() as conn:
        found = incidents.open_incident(conn, EXPORT, "missed", "no decision")
    assert found is not None
    notes.add_note(world.owner, "incident", found, "the beat host was rebooted", "ivan")
    notes.acknowledge(world.owner, found, "ivan")
    alerts.deliver(world.owner, get_settings())
    body = smtp.inbox.messages[-1][1].get_content()
    assert "the beat host was rebooted" in body and "Acknowledged: by ivan" in body
    with world.owner.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(note)).scalar_one() == 1
        assert conn.execute(sa.select(incident.c.acknowledged_by)).scalar_one() == "ivan"
