"""The web app's least-privilege PostgreSQL role (issue 11, hardening)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from gim_tasks.db.engine import make_engine
from gim_tasks.db.roles import grant_web
from gim_tasks.errors import GimError
from gim_tasks.monitor import notify
from gim_tasks.options import store
from gim_tasks.runtime import manager
from gim_tasks.settings import get_settings
from gim_tasks.web import auth
from gim_tasks.web.app import create_app


@pytest.mark.date_sensitive
def test_web_role_can_do_what_the_web_app_does_and_nothing_more(gim_env: dict[str, str]) -> None:
    owner_url = gim_env["GIM_DATABASE_URL"]
    owner = make_engine(owner_url)
    role = "web_" + owner_url.rsplit("/", 1)[1]  # roles are cluster-wide: one per test database
    with owner.begin() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
    with pytest.raises(GimError, match="role 'nobody_here' does not exist"):
        grant_web(owner, "nobody_here")
    grant_web(owner, role)
    grant_web(owner, role)  # idempotent
    auth.add_user(owner, "ops", "admin", "password-ops", "test")
    token = auth.create_token(owner, "ops", actor="test")

    web_url = owner_url.replace("postgresql://gim@", f"postgresql://{role}@", 1)
    web = make_engine(web_url)
    # What the web app does: admit, list, stop and cancel runs; options; subscriptions.
    admission = manager.request_run(web, "Job_MaintainGIM", "ops")
    assert admission.state == "Running"
    assert manager.cancel_run(web, admission.run_id, "ops").endswith("Cancelled")
    # A re-aggregation reads what the mart holds (D5: purge marks, DATE_TIME's span).
    today = datetime.now(UTC).date()
    queued = manager.request_run(
        web, "Job_AggregateGIM", "ops", {"params": f"-insertPendingAgg ALLSETS:{today}:{today}"}
    )
    assert queued.state == "Running" and "request is queued (M4)" in (queued.reason or "")
    assert manager.cancel_run(web, queued.run_id, "ops").endswith("Cancelled")
    far = today + timedelta(days=5 * 366)  # beyond date-time-max-days-ahead
    refused = manager.request_run(
        web, "Job_AggregateGIM", "ops", {"params": f"-insertPendingAgg ALLSETS:{far}:{far}"}
    )
    assert refused.state == "Rejected" and "outside DATE_TIME" in (refused.reason or "")
    store.set_option(web, "schedule", "run-export", "true", "ops")
    store.unset_option(web, "schedule", "run-export", "ops")
    notify.add_subscription(web, "Job_ExportGIM", "a@example.com", True, True, "ops")
    assert auth.token_principal(web, token) is not None
    client = TestClient(create_app(get_settings(), web))
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/jobs/scheduled", headers=headers).status_code == 200
    assert client.get(f"/api/runs/{admission.run_id}", headers=headers).status_code == 200
    assert client.get("/api/options", headers=headers).status_code == 200
    # And nothing more: no facts, no deletes of history, no DDL.
    forbidden = [
        "SELECT count(*) FROM interaction_fact",
        "INSERT INTO discard (idb_id, source_table, source_id, reason, payload) "
        "VALUES (1, 't', 1, 'r', '{}')",
        "DELETE FROM job_run",
        "TRUNCATE job_run",
        "INSERT INTO web_user (name, role, password_hash, created_by) "
        "VALUES ('x', 'admin', 'h', 'x')",
        "CREATE TABLE sneaky (id int)",
        "DROP TABLE option_change",
        "SELECT * FROM stg_interaction",
    ]
    with owner.begin() as conn:
        ended = conn.execute(
            sa.text(
                "INSERT INTO job_run (job, trigger, actor, state, started_at, ended_at) VALUES "
                "('Job_ExtractICON', 'scheduled', 'scheduler', 'Failed', now(), now()) "
                "RETURNING id"
            )
        ).scalar_one()
        running = conn.execute(
            sa.text(
                "INSERT INTO job_run (job, trigger, actor, state, started_at) VALUES "
                "('Job_TransformGIM', 'scheduled', 'scheduler', 'Running', now()) RETURNING id"
            )
        ).scalar_one()
    forbidden += [
        # rewrite history: counts, outcomes, who ran it
        f"UPDATE job_run SET rows_read = 0 WHERE id = {running}",
        f"UPDATE job_run SET error = NULL WHERE id = {ended}",
        f"UPDATE job_run SET state = 'Completed' WHERE id = {running}",
        f"UPDATE job_run SET state = 'Cancelled' WHERE id = {running}",
        "INSERT INTO job_run (job, trigger, actor, state, started_at) "
        "VALUES ('Job_ExportGIM', 'manual', 'x', 'Completed', now())",
        "INSERT INTO job_run (job, trigger, actor, state) "
        "VALUES ('Job_ExportGIM', 'scheduled', 'scheduler', 'Scheduled')",
        # make a viewer admin, steal or extend a token, forge the option log
        "UPDATE web_user SET role = 'admin'",
        "UPDATE web_user SET password_hash = 'x'",
        "UPDATE api_token SET user_id = 1",
        "UPDATE api_token SET expires_at = NULL",
        "INSERT INTO api_token (user_id, label, token_sha256) VALUES (1, 'x', 'y')",
        "INSERT INTO option_change (section, name, old_value, new_value, changed_by) "
        "VALUES ('schedule', 'timezone', 'GMT', 'UTC', 'someone else')",
        "INSERT INTO option_value (section, name, value, changed_by) "
        "VALUES ('schedule', 'run-export', 'true', 'x')",
        "DELETE FROM option_change",
        # issue 41: an admission's row carries no counts, error or skip; a firing the web
        # inserts is a planned run's, undecided (it cannot forge a verdict)
        "INSERT INTO job_run (job, trigger, actor, state, rows_read, ended_at) "
        "VALUES ('Job_ExportGIM', 'manual', 'x', 'Rejected', 5000, now())",
        "INSERT INTO job_run (job, trigger, actor, state, error) "
        "VALUES ('Job_ExportGIM', 'manual', 'x', 'Rejected', 'forged')",
        "INSERT INTO firing (firing_id, stream, job, planned_at, verdict) "
        "VALUES ('at:Job_ExportGIM:x', 'at', 'Job_ExportGIM', now(), 'on-time')",
        "INSERT INTO firing (firing_id, stream, job, planned_at) "
        "VALUES ('Job_ExportGIM:2030-01-01', 'export', 'Job_ExportGIM', now())",
    ]
    for statement in forbidden:
        with psycopg.connect(web_url, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    # The option function writes only the options this version declares (issue 41).
    with psycopg.connect(web_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"unknown option"):
            conn.execute("SELECT * FROM gim_write_option('schedule', 'no-such', 'x', 'ops', '')")
    # Row-level security: an ended run is not there to be changed (nothing happens).
    with psycopg.connect(web_url, autocommit=True) as conn:
        assert conn.execute(f"UPDATE job_run SET reason = 'x' WHERE id = {ended}").rowcount == 0
        assert (
            conn.execute(f"UPDATE job_run SET state = 'Cancelled' WHERE id = {ended}").rowcount == 0
        )
    with owner.connect() as conn:
        assert conn.execute(
            sa.text(f"SELECT state, reason FROM job_run WHERE id = {ended}")
        ).one() == ("Failed", None)
    # Operators' holds (issue 34) as the web role: pause, resume, skip, blackouts, a planned
    # run and its cancel.
    from gim_tasks.runtime import holds, run_at
    from gim_tasks.schedule.holds import Blackout

    holds.pause(web, "Job_ExportGIM", "month-end", "ops", stop=True)
    holds.pause(web, None, "network", "ops")
    holds.resume(web, None, "ops")
    holds.resume(web, "Job_ExportGIM", "ops")
    options = store.load_options(web.connect()).schedule()
    upcoming = holds.skip(
        web,
        options,
        "Job_ExtractICON",
        "bad data",
        "ops",
        at=datetime.now(UTC).replace(hour=23, minute=0, second=0, microsecond=0)
        + timedelta(days=1),
    )
    assert upcoming.startswith("Job_ExtractICON:")
    holds.add_blackout(web, Blackout("w", "month-end", "close", days=2), "ops")
    holds.remove_blackout(web, "w", "ops")
    planned = run_at.plan_run(web, "Job_MaintainGIM", datetime.now(UTC) + timedelta(days=1),
                              "after upgrade", "ops")  # fmt: skip
    assert run_at.cancel_planned(web, planned, "ops").endswith("cancelled by ops")
    # What it may do on a Running run: ask it to stop (M6), through the manager.
    assert "stop requested" in manager.stop_run(web, running, "ops")
    with pytest.raises(GimError, match=f"run {ended} is Failed"):
        manager.stop_run(web, ended, "ops")
    web.dispose()
    owner.dispose()


def test_every_route_works_as_the_web_role(gim_env: dict[str, str], web_role_url: str) -> None:
    """The web app as ./dev up and production run it, on its least-privilege role: every
    route of the role table answers, none fails for a missing grant (a 500)."""
    from test_web_api import ROUTES, Web, _call

    owner = make_engine(gim_env["GIM_DATABASE_URL"])
    for name in ("viewer", "operator", "admin"):
        auth.add_user(owner, name, name, "correct horse 1", "test")
    web_engine = make_engine(web_role_url)
    site = Web(create_app(get_settings(), web_engine), owner)
    session = site.session("admin")
    for method, path in ROUTES:
        for client, csrf in ((site.api("admin"), None), session):
            reply = _call(client, method, path, csrf)
            assert reply.status_code < 500, (method, path, reply.text[:300])
        if path == "/logout":
            session = site.session("admin")
    web_engine.dispose()
    owner.dispose()
