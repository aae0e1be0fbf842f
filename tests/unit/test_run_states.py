"""One place names the run states (issue "Structure" item 1): gim_tasks/lifecycle.py. Code
elsewhere says RunState.RUNNING; the schema (db/tables.py) and its migrations are frozen DDL
text, and type-level Literal[...] declarations of the API's document name values by design."""

from __future__ import annotations

import re
from pathlib import Path

from gim_tasks.lifecycle import RUN_STATES, TRIGGERS, RunState, Trigger

ROOT = Path(__file__).resolve().parents[2] / "gim_tasks"
EXEMPT = ("lifecycle.py", "db/tables.py")
LITERAL = re.compile(
    r"""(?<![\w'"])["']("""
    + "|".join(sorted(RUN_STATES, key=len, reverse=True))
    + r""")["'](?![\w"'])"""
)


def test_the_enums_are_the_states_and_triggers() -> None:
    assert [s.value for s in RunState] == list(RUN_STATES) and len(RUN_STATES) == 8
    assert [t.value for t in Trigger] == list(TRIGGERS)
    from typing import get_args

    from gim_tasks.web.schemas import Trigger as ApiTrigger  # the API document's copy

    assert get_args(ApiTrigger) == TRIGGERS
    assert RunState.RUNNING == "Running" and f"{RunState.COMPLETED_WITH_WARNINGS}" == (
        "Completed with warnings"
    )


def test_no_run_state_literal_outside_the_lifecycle_module() -> None:
    found = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if relative in EXEMPT or relative.startswith("db/migrations/"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if "Literal[" not in line and LITERAL.search(line):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert found == []


def test_job_bodies_write_only_through_the_runs_fenced_transactions() -> None:
    """Issue "Structure" item 1: a job body opens its committing transactions with
    JobContext.transaction(), which places the batch settings and the fence (R2); none opens
    one by hand or calls the fence itself."""
    for path in (ROOT / "jobs").glob("*.py"):
        if path.name == "base.py":
            continue
        text = path.read_text()
        assert ".mart.begin()" not in text, path.name
        assert ".fence(" not in text, path.name
        assert "batch_transaction_settings(" not in text, path.name


def test_runs_are_recorded_in_one_place() -> None:
    """Every job_run row is written by runtime/runs.py's record() (manager and beat call it)."""
    writers = [
        path.relative_to(ROOT).as_posix()
        for path in ROOT.rglob("*.py")
        if "insert(job_run)" in path.read_text()
    ]
    assert writers == ["runtime/runs.py"]
