"""The README's Architecture table names every module of ``gim_tasks/`` (issue 31): a module
is named by its path (``gim_tasks/monitor/timeline.py``) or, in the row of its package
(``gim_tasks/runtime/``), by its path inside that package (``beat.py``)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "gim_tasks"


def _table() -> dict[str, str]:
    """First cell (what the row is about) -> the whole row, for the Architecture table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        found = re.match(r"^\| `([^`]+)`", line)
        if found:
            rows[found.group(1)] = line
    return rows


def _modules() -> list[Path]:
    return sorted(
        path
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and "versions" not in path.parts
    )


def unnamed(rows: dict[str, str], modules: list[Path]) -> list[str]:
    missing = []
    for path in modules:
        relative = path.relative_to(ROOT).as_posix()
        if relative in rows:
            continue
        # The nearest package with a row must name the module inside it.
        named = False
        for parent in path.relative_to(ROOT).parents:
            row = rows.get(parent.as_posix() + "/")
            if row is not None:
                named = f"`{path.relative_to(ROOT / parent).as_posix()}`" in row
                break
        if not named:
            missing.append(relative)
    return missing


def test_every_module_of_gim_tasks_is_in_the_architecture_table() -> None:
    missing = unnamed(_table(), _modules())
    assert missing == [], f"add to README's Architecture table: {missing}"


def test_the_check_finds_a_module_the_table_does_not_name() -> None:
    rows = _table()
    invented = [PACKAGE / "runtime" / "not_named_anywhere.py", PACKAGE / "standalone.py"]
    assert unnamed(rows, invented) == [
        "gim_tasks/runtime/not_named_anywhere.py",
        "gim_tasks/standalone.py",
    ]
