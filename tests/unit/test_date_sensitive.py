"""The ``date_sensitive`` marker is complete (issue 32): a test that reads the real calendar
date carries it, so ``tests/system/test_shifted_clock.py`` runs it again with the clock
shifted. Reading the date: calling ``date.today()``; calling ``datetime.now()`` and taking
its ``.date()`` or days from it; or using a module constant computed from the real clock."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARK = "date_sensitive"


def _marked(node: ast.AST) -> bool:
    return any(MARK in ast.unparse(d) for d in getattr(node, "decorator_list", []))


def reads_the_date(source: str) -> tuple[list[str], list[str]]:
    """(test functions that read the calendar date, those of them carrying the marker)."""
    tree = ast.parse(source)
    clock_constants = set()
    module_marked = False
    for node in tree.body:
        if isinstance(node, ast.Assign):
            text = ast.unparse(node)
            if any(call in text for call in ("datetime.now(", "date.today(")):
                clock_constants |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            if any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
                module_marked = MARK in text
    reading, marked = [], []
    for node in tree.body:
        if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
            continue
        text = ast.unparse(node)
        now = "datetime.now(" in text and (".date()" in text or "days=" in text)
        constant = any(isinstance(n, ast.Name) and n.id in clock_constants for n in ast.walk(node))
        if now or constant or "date.today(" in text:
            reading.append(node.name)
            if module_marked or _marked(node):
                marked.append(node.name)
    return reading, marked


def test_every_test_that_reads_the_calendar_date_is_marked_date_sensitive() -> None:
    unmarked = []
    for folder in ("integration", "system"):
        for path in sorted((ROOT / "tests" / folder).glob("test_*.py")):
            if path.name == "test_shifted_clock.py":  # runs the marked tests: not one of them
                continue
            reading, marked = reads_the_date(path.read_text())
            unmarked += [
                f"{path.relative_to(ROOT)}::{name}" for name in reading if name not in marked
            ]
    assert unmarked == [], f"mark these @pytest.mark.{MARK}: {unmarked}"


def test_the_check_sees_each_way_of_reading_the_date() -> None:
    source = """
START = datetime.now(UTC) - timedelta(days=2)

def test_today():
    day = date.today()

def test_days_from_now():
    then = datetime.now(UTC) - timedelta(days=3)

def test_constant():
    assert START

def test_instant_only():
    stamp = datetime.now(UTC)

@pytest.mark.date_sensitive
def test_marked():
    day = date.today()
"""
    reading, marked = reads_the_date(source)
    assert reading == ["test_today", "test_days_from_now", "test_constant", "test_marked"]
    assert marked == ["test_marked"]
