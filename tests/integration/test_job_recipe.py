"""Issue 33: a job added by the README's recipe ("Adding a job": a body module, a catalogue
row, its option rows; ``GIM_JOB_MODULES`` names the module) appears everywhere a built-in job
does: the plan, Next Run, the beat's firing and its ledger verdict, the exclusivity gate, the
Scheduled list and the API's job enumeration, Celery's routes, and a real run of its body.

The probe runs in a process of its own: the catalogue is read once, at import, as in every
gim-tasks process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = "Job_CheckMartGIM"


def _probe(gim_env: dict[str, str], modules: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **gim_env,
        "GIM_JOB_MODULES": modules,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
    }
    return subprocess.run(
        [sys.executable, "-m", "tests.recipe.probe"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_job_added_by_the_recipe_is_planned_fired_judged_listed_and_run(
    gim_env: dict[str, str],
) -> None:
    done = _probe(gim_env, "tests.recipe.check_mart")
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert [e["at"] for e in found["plan"]] == ["2026-11-23T05:45:00+01:00"]
    assert found["next"][0]["active"] is True
    assert found["next"][0]["schedule"] == "daily at 05:45, Europe/Berlin"
    # Its exclusivity class (export's): it waits for the maintenance the first tick caught up.
    state, trigger, reason, firing = found["runs"][0]
    assert (state, trigger) == ("Scheduled", "scheduled")
    assert reason.startswith("waiting for maintenance run") and reason.endswith("(S8)")
    assert firing == f"{NAME}:2026-11-23T04:45:00+00:00"
    assert found["queued_while_held"] == 0
    assert [sent for _, sent in found["released"]] == [True]  # released, sent to a worker
    assert found["queued"] == 1  # on its catalogue queue
    assert found["ledger"][0] == ["check-mart", "held", firing]
    scheduled = found["api_scheduled"][0]
    assert scheduled["category"] == "Checks" and scheduled["active"] is True
    assert scheduled["scheduled_by"][-1] == "check-mart-schedule"
    assert [r["name"] for r in found["api_categories"]] == [NAME]
    assert found["openapi_names"] and found["page"]
    assert found["route"] == {"queue": "export"}
    code, text = found["while_sent"]
    assert code == 1 and "already running as run" in text and "(S2)" in text
    code, text = found["local_run"]
    assert code == 0, text
    assert found["last_run"] == ["Completed", "manual"]


def test_a_site_job_module_that_cannot_be_loaded_is_named(gim_env: dict[str, str]) -> None:
    done = _probe(gim_env, "tests.recipe.no_such_module")
    assert done.returncode != 0
    assert "GIM_JOB_MODULES: cannot import 'tests.recipe.no_such_module'" in done.stderr
