"""What the mart still holds (SPEC D5), read for :mod:`gim_tasks.aggregate.safety`, and the
purge marks maintenance writes when it removes facts or aggregates.

Consistency: maintenance drops fact partitions, and records the mark, in one transaction that
holds the purge lock (``db.locks.PURGE``, exclusive). The aggregation job reads the holdings
under the same lock taken shared, in the transaction that then rebuilds, so nothing it was
checked against vanishes before its rebuild commits. (Transform's partition creation takes the
partition lock, not this one: a long re-aggregation never holds up a load.)
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gim_tasks.aggregate.safety import Holdings
from gim_tasks.db import locks
from gim_tasks.db.mart_tables import purge_mark
from gim_tasks.options.values import Options

KEEP_OPTIONS = ("days-to-keep-facts", "days-to-keep-aggregates")


def lock_purge(conn: Connection, shared: bool) -> None:
    """The purge lock, to the end of the transaction: exclusive to purge, shared to rebuild."""
    locks.hold(conn, locks.PURGE, shared=shared)


def load_holdings(
    conn: Connection, options: Options, now: datetime, lock: bool = False, calendar: bool = True
) -> Holdings:
    """Holdings at ``now``. ``lock``: take the purge lock shared for the rest of the
    transaction (the aggregation job, which rebuilds in it). ``calendar``: read DATE_TIME's
    span too (a scan of the calendar; incremental passes need only the facts' bound)."""
    if lock:
        lock_purge(conn, shared=True)
    keep = {name: int(options.get("gim-etl", name)) for name in KEEP_OPTIONS}
    # Maintenance keeps whole UTC day partitions from today - keep (D2) ...
    facts_from = datetime.combine(
        now.astimezone(UTC).date() - timedelta(days=keep["days-to-keep-facts"]), time(0), UTC
    )
    # ... and SUBHOUR and HOUR rows from now - keep.
    aggregates_from = now - timedelta(days=keep["days-to-keep-aggregates"])
    marks: dict[str, datetime] = {
        row.what: row.purged_before
        for row in conn.execute(sa.select(purge_mark.c.what, purge_mark.c.purged_before))
    }
    facts_from = max(facts_from, marks.get("facts", facts_from))
    aggregates_from = max(aggregates_from, marks.get("aggregates", aggregates_from))
    span: tuple[date, date] | None = None
    if calendar:
        first, last = conn.execute(
            sa.text("SELECT min(local_date), max(local_date) FROM date_time")
        ).one()
        span = None if first is None else (first, last)
    return Holdings(
        facts_from=facts_from,
        aggregates_from=aggregates_from,
        calendar=span,
        keep=keep,
    )


def mark_purged(conn: Connection, what: str, before: datetime) -> None:
    """Record that rows of ``what`` (facts, aggregates) before ``before`` are gone. The mark
    only moves forward."""
    conn.execute(
        sa.text(
            "INSERT INTO purge_mark (what, purged_before) VALUES (:w, :b) "
            "ON CONFLICT (what) DO UPDATE SET purged_before = "
            "greatest(purge_mark.purged_before, excluded.purged_before), updated_at = now()"
        ),
        {"w": what, "b": before},
    )
