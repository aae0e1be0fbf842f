"""The pure scheduling core depends on nothing of the shell (issue 33): no module of
``gim_tasks/schedule/`` imports from the option store, the runtime, the monitor, the web or
the database, at the top or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

from gim_tasks.schedule.jobs import JOB_NAMES

ROOT = Path(__file__).resolve().parents[2]
SHELL = ("options", "runtime", "monitor", "web", "db", "cli")


def shell_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "gim_tasks" and len(parts) > 1 and parts[1] in SHELL:
                found.append(name)
    return found


def test_the_scheduling_core_imports_nothing_of_the_shell() -> None:
    offenders = {
        path.name: found
        for path in sorted((ROOT / "gim_tasks" / "schedule").glob("*.py"))
        if (found := shell_imports(path.read_text()))
    }
    assert offenders == {}


def test_the_check_sees_an_import_of_the_shell() -> None:
    source = (
        "from gim_tasks.options.values import Options\ndef f():\n    import gim_tasks.db.engine\n"
    )
    assert shell_imports(source) == ["gim_tasks.options.values", "gim_tasks.db.engine"]


def job_name_literals(source: str) -> int:
    """String literals (docstrings aside) that spell a job's name."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return sum(
        1
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and any(name in node.value for name in JOB_NAMES)
    )


def test_job_names_are_spelled_in_the_catalogue_only() -> None:
    """Issue 33: a job is declared once; everything else names it through schedule/jobs.py
    (migrations aside: they are history)."""
    spelling = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "gim_tasks").rglob("*.py")
        if "versions" not in path.parts and job_name_literals(path.read_text())
    )
    assert spelling == ["gim_tasks/schedule/jobs.py"]
