"""The web app's least-privilege PostgreSQL role (issue 11, hardening)."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from gim_tasks.db.engine import make_engine
from gim_tasks.db.roles import grant_web
from gim_tasks.errors import GimError
from gim_tasks.options import store
from gim_tasks.runtime import manager
from gim_tasks.settings import get_settings
from gim_tasks.web import auth, notify
from gim_tasks.web.app import create_app


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
    token = auth.create_token(owner, "ops")

    web_url = owner_url.replace("postgresql://gim@", f"postgresql://{role}@", 1)
    web = make_engine(web_url)
    # What the web app does: admit, list, stop and cancel runs; options; subscriptions.
    admission = manager.request_run(web, "Job_MaintainGIM", "ops")
    assert admission.state == "Running"
    assert manager.cancel_run(web, admission.run_id, "ops").endswith("Cancelled")
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
    for statement in forbidden:
        with psycopg.connect(web_url, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    web.dispose()
    owner.dispose()
