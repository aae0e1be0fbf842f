"""The advisory-lock registry (issue "Structure" item 2): every lock is named once in
gim_tasks/db/locks.py with a distinct key, what it serialises and who takes it; no other module
names a key or calls pg_advisory_* directly."""

from __future__ import annotations

import importlib
from pathlib import Path

from gim_tasks.db import locks

ROOT = Path(__file__).resolve().parents[2]


def test_every_lock_has_a_distinct_key_and_says_what_it_serialises() -> None:
    keys = [lock.key for lock in locks.LOCKS]
    assert len(set(keys)) == len(keys)
    assert len({lock.name for lock in locks.LOCKS}) == len(keys)
    for lock in locks.LOCKS:
        assert lock.serialises and lock.takers, lock.name


def test_every_taker_exists_and_takes_its_lock() -> None:
    for lock in locks.LOCKS:
        constant = next(name for name, value in vars(locks).items() if value is lock)
        for taker in lock.takers:
            path = ROOT / "gim_tasks" / (taker.replace(".", "/") + ".py")
            if path.exists():  # a module that takes it at import (the migration environment)
                source = path.read_text()
            else:
                module, _, function = taker.rpartition(".")
                loaded = importlib.import_module(f"gim_tasks.{module}")
                assert hasattr(loaded, function), f"{lock.name}: {taker} does not exist"
                source = (ROOT / "gim_tasks" / (module.replace(".", "/") + ".py")).read_text()
            assert f"locks.{constant}" in source, f"{taker} does not take locks.{constant}"


def test_no_advisory_lock_outside_the_registry() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "gim_tasks").rglob("*.py")
        if path != ROOT / "gim_tasks" / "db" / "locks.py" and "pg_advisory" in path.read_text()
    ]
    assert offenders == []


def test_the_per_table_lock_keys_differ_per_table_and_stay_stable() -> None:
    assert locks.table_key("stg_party_segment") != locks.table_key("stg_interaction")
    assert locks.table_key("stg_party_segment") == locks.table_key("stg_party_segment")
    assert -(2**31) <= locks.table_key("stg_agent") < 2**31
