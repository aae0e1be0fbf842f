"""docs/RULES.md, the project's rules map (issue "Structure" item 5): every rule id cited in the
code or the tests has a row; every enforcement point it names resolves to a real attribute of
gim_tasks; every test it lists exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULE = re.compile(r"(?<![A-Za-z0-9])([SMRADCOPLQBH]\d{1,2})(?![0-9])")
ROW = re.compile(r"^\| ([A-Z]\d+) \| (.+?) \| (.+?) \| (.+?) \|$")


def _rows() -> dict[str, tuple[str, list[str], list[str]]]:
    rows = {}
    for line in (ROOT / "docs" / "RULES.md").read_text().splitlines():
        found = ROW.match(line)
        if found:
            rule, words, where, tests = found.groups()
            rows[rule] = (words, re.findall(r"`([^`]+)`", where), re.findall(r"`([^`]+)`", tests))
    return rows


def _cited() -> set[str]:
    """Rule ids the code and the tests cite: in comments, docstrings and test names."""
    cited: set[str] = set()
    for folder in ("gim_tasks", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            cited |= set(RULE.findall(text))
            for name in re.findall(r"def (test_\w+)", text):
                found = re.findall(r"(?<=_)([smradcoplqbh]\d{1,2})(?=_|$)", name)
                cited |= {r.upper() for r in found}
    return cited


def test_every_cited_rule_is_in_the_map() -> None:
    missing = _cited() - set(_rows())
    assert not missing, f"rules cited but not in docs/RULES.md: {sorted(missing)}"


def test_every_enforcement_point_resolves() -> None:
    """``module.attribute``, or a row of the exclusivity gate's table as
    ``schedule.gate.TABLE[row-id]``: the row exists and cites the rule."""
    from gim_tasks.schedule.gate import ROWS

    for rule, (_, where, _) in _rows().items():
        assert where, rule
        for point in where:
            point, _, row = point.partition("[")
            module, _, attribute = point.rpartition(".")
            loaded = importlib.import_module(f"gim_tasks.{module}")
            assert hasattr(loaded, attribute), f"{rule}: gim_tasks.{point} does not exist"
            if row:
                row = row.rstrip("]")
                assert row in ROWS, f"{rule}: the gate has no row {row}"
                assert rule in RULE.findall(f"{row} {ROWS[row].words}"), f"{rule}: {row}"


def test_every_listed_test_exists() -> None:
    for rule, (words, _, tests) in _rows().items():
        assert words.strip() and tests, rule
        for test in tests:
            path, _, name = test.partition("::")
            source = (ROOT / path).read_text()
            assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{rule}: {test} missing"


def _test_source(path: str, name: str) -> str:
    """A test function's source: its name, docstring and body."""
    import ast

    text = (ROOT / path).read_text()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return ast.get_source_segment(text, node) or ""
    return ""


def test_every_listed_test_is_about_its_rule() -> None:
    """A test named for a rule mentions the rule's id (in its name, docstring or comments) or
    calls the function the row names as where it is enforced (issue 32)."""
    unrelated = []
    for rule, (_, where, tests) in _rows().items():
        functions = {point.rpartition(".")[2] for point in where}
        for test in tests:
            path, _, name = test.partition("::")
            source = _test_source(path, name)
            mentions = re.search(rf"(?<![A-Za-z0-9]){rule}(?![0-9])", source, re.I)
            if not mentions and not any(function in source for function in functions):
                unrelated.append(f"{rule}: {test}")
    assert unrelated == [], unrelated
