"""Run with ``GIM_JOB_MODULES=tests.recipe.check_mart`` and a test's ``GIM_*`` environment:
prints, as JSON, where the site job appears (the plan, Next Run, the beat's tick and its
ledger verdict, the Scheduled list and the API, Celery's routes, a real run of its body)."""

from __future__ import annotations

import contextlib
import io
import json
import os
from typing import Any

import sqlalchemy as sa

from gim_tasks.cli.main import main as gim
from gim_tasks.options import store
from gim_tasks.settings import get_settings
from tests.integration.beat_harness import Beat
from tests.recipe.check_mart import NAME


def _cli(*args: str) -> Any:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = gim(list(args))
    return code, out.getvalue()


def main() -> None:
    env = {key: value for key, value in os.environ.items() if key.startswith("GIM_")}
    beat = Beat(env)
    # The recipe's last step: gim db upgrade lists the new job's options (option_key).
    code, _ = _cli("db", "upgrade")
    assert code == 0
    store.set_option(beat.engine, "schedule", "run-check-mart", "true", "test")
    found: dict[str, Any] = {}
    code, text = _cli("schedule", "plan", "--start", "2026-11-23", "--days", "1", "--json")
    found["plan"] = [e for e in json.loads(text) if e["job"] == NAME] if not code else code
    code, text = _cli("schedule", "next", "--json")
    found["next"] = [r for r in json.loads(text) if r["job"] == NAME] if not code else code
    # The first tick plans the ledger (and is the scheduler's epoch); the second fires.
    beat.tick("2026-11-23 05:40:00")
    beat.tick("2026-11-23 05:45:05")
    # The first tick caught up today's maintenance (S12): the site job, of the export class,
    # waits for it (S8) and is released when it ends.
    found["runs"] = [(r.state, r.trigger, r.reason, r.firing_id) for r in beat.rows(NAME)]
    found["queued_while_held"] = beat.queued("export")
    for maintenance in beat.rows("Job_MaintainGIM"):
        beat.end(maintenance.id)
    beat.tick("2026-11-23 05:45:20")
    found["released"] = [(r.reason, r.dispatched_at is not None) for r in beat.rows(NAME)]
    found["queued"] = beat.queued("export")
    with beat.engine.connect() as conn:
        found["ledger"] = [
            (r.stream, r.verdict, r.firing_id)
            for r in conn.execute(
                sa.text("SELECT * FROM firing WHERE job = :j ORDER BY planned_at LIMIT 2"),
                {"j": NAME},
            )
        ]
    from gim_tasks.web import auth
    from gim_tasks.web.app import create_app
    from tests.integration.test_web_api import PASSWORD, ROLES, Web

    for role in ROLES:
        auth.add_user(beat.engine, role, role, PASSWORD, "test", email=f"{role}@example.com")
    web = Web(create_app(get_settings(), beat.engine), beat.engine)
    api = web.api("viewer")
    found["api_scheduled"] = [r for r in api.get("/api/jobs/scheduled").json() if r["name"] == NAME]
    found["api_categories"] = api.get("/api/jobs/scheduled", params={"category": "Checks"}).json()
    found["openapi_names"] = NAME in json.dumps(web.app.openapi())
    page, _ = web.session("viewer")
    found["page"] = NAME in page.get("/jobs/scheduled").text
    found["route"] = beat.scheduler.app.conf.task_routes.get(NAME)
    # The released run was sent to a worker (none runs here): while it counts as running, a
    # manual run is refused (S2); once it ended, the body runs in this process.
    code, text = _cli("run", NAME, "--actor", "test")
    found["while_sent"] = code, text
    for sent in beat.rows(NAME):
        beat.end(sent.id)
    code, text = _cli("run", NAME, "--local", "--actor", "test")
    found["local_run"] = code, text
    found["last_run"] = [(r.state, r.trigger) for r in beat.rows(NAME)][-1]
    print(json.dumps(found, default=str))


if __name__ == "__main__":
    main()
