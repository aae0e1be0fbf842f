"""Day partitions of the fact tables (SPEC D2): UTC days, named ``<table>_pYYYYMMDD``.

Transform creates the partitions its rows need; maintenance creates them ahead and drops
expired ones whole. DDL on partitions takes one transaction-scoped advisory lock, so Transform
and maintenance never race on the same partition.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gim_tasks.db import locks


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def existing_partitions(conn: Connection, table: str) -> set[str]:
    rows = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :table"
        ),
        {"table": table},
    )
    return {row[0] for row in rows}


def ensure_partitions(conn: Connection, table: str, days: Iterable[date]) -> list[str]:
    """Create the missing day partitions of ``table`` for ``days``; returns those created."""
    wanted = sorted(set(days))
    if not wanted:
        return []
    existing = existing_partitions(conn, table)
    missing = [day for day in wanted if partition_name(table, day) not in existing]
    if not missing:
        return []
    locks.hold(conn, locks.PARTITIONS)
    existing = existing_partitions(conn, table)  # again, under the lock
    created = []
    for day in missing:
        name = partition_name(table, day)
        if name in existing:
            continue
        # Names and bounds come from dates, never from data text.
        conn.execute(
            sa.text(
                f'CREATE TABLE "{name}" PARTITION OF "{table}" FOR VALUES FROM '
                f"('{day.isoformat()} 00:00:00+00') TO ('{(day + timedelta(days=1)).isoformat()} "
                "00:00:00+00')"
            )
        )
        created.append(name)
    return created
