"""The installed package is the product only (issue "Structure" item 4): the reliability suite,
the local servers and the other development tools live in devtools/, outside gim_tasks, and no
product module imports them, so the wheel (which packages gim_tasks only) cannot need them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_packages_gim_tasks_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["gim_tasks"]
    assert not (ROOT / "gim_tasks" / "devtools").exists()
    assert not (ROOT / "gim_tasks" / "localstack.py").exists()


def test_no_product_module_imports_the_development_tools() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "gim_tasks").rglob("*.py")
        if re.search(r"^\s*(from|import) (devtools|bench|tests)\b", path.read_text(), re.M)
    ]
    assert offenders == []
