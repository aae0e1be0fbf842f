"""Every PostgreSQL advisory lock of gim-tasks: its key, what it serialises and who takes it
(issue "Structure" item 2). No other module names an advisory-lock key or calls
``pg_advisory_*`` (a unit test greps for it); they call :func:`hold` with one of these.

Why PostgreSQL and not Redis (README "Where exclusivity lives"): the writes these locks order
are PostgreSQL writes, so a lock in the same database is taken and released with them, in the
same transaction; a Redis lock could expire or fail over while the transaction it guards goes
on. Redis holds only the broker, RedBeat's beat lock and its entries, and the beat's cursors.

This module imports nothing heavy: the command line reads it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AdvisoryLock:
    name: str
    key: int  # the lock's key; two-key locks (``per_table``) use it as the first key
    serialises: str
    takers: tuple[str, ...]  # module.function, under gim_tasks
    #: transaction-scoped (released at commit or rollback) unless ``session`` (held until
    #: released or the connection ends: only the migration lock, which spans transactions)
    session: bool = False
    #: one lock per staging table (or login account): the second key is :func:`table_key` of
    #: its name
    per_table: bool = False


ADMISSION = AdvisoryLock(
    "admission",
    0x67696D5F61646D,  # "gim_adm"
    "admission decisions: the beat's tick and every manual start, stop-to-readmit and cancel "
    "decide on the same view of the runs (M0, S2, S11)",
    ("runtime.beat.carry_out", "runtime.manager.request_run", "runtime.manager.readmit"),
)
OPTIONS = AdvisoryLock(
    "options",
    0x67696D5F6F7074,  # "gim_opt"
    "option writes and their change-log rows (C1: a check never reads half a change)",
    ("options.store.set_option", "options.store.unset_option", "options.store.import_options"),
)
PARTITIONS = AdvisoryLock(
    "partitions",
    0x67696D5F706172,  # "gim_par"
    "DDL on fact day partitions: Transform and maintenance creating them, maintenance dropping "
    "expired ones (D2)",
    ("db.partitions.ensure_partitions", "jobs.maintain.step_expired_partitions"),
)
PURGE = AdvisoryLock(
    "purge",
    0x67696D5F707267,  # "gim_prg"
    "purging facts and aggregates (exclusive) against re-aggregation reading what is still "
    "held (shared), so nothing checked vanishes before the rebuild commits (D5)",
    ("aggregate.retention.lock_purge",),
)
AGGREGATE_TABLES = AdvisoryLock(
    "aggregate-tables",
    0x67696D5F616767,  # "gim_agg"
    "creating aggregate tables and adding measures the registry gained (one creator at a time)",
    ("aggregate.compute.ensure_tables",),
)
AGGREGATE_WRITE = AdvisoryLock(
    "aggregate-write",
    0x67696D5F617777,  # "gim_aww"
    "every transaction that writes aggregate rows: the aggregation job's passes and requests "
    "and a back-fill's aggregate items (B1). The incremental passes update MONTH and above as "
    "old - old DAY + new DAY, which holds only with one writer at a time",
    ("jobs.aggregate.run", "jobs.backfill.aggregate_day"),
)
MIGRATION = AdvisoryLock(
    "migration",
    0x67696D5F6D6967,  # "gim_mig"
    "schema migrations: two pods running `gim db upgrade` at once do not both apply a revision",
    ("db.migrations.env",),
    session=True,
)
STAGING_WRITE = AdvisoryLock(
    "staging-write",
    0x67696D73,  # "gims"
    "the writers of one staging table, so its load_seq order is its commit order, which "
    "Transform's mark relies on (D1); different tables are extracted in parallel",
    ("jobs.extract.extract_table",),
    per_table=True,
)
IDB_INIT = AdvisoryLock(
    "idb-init",
    7364823,
    "initialising a development IDB's schema (gim idb init, tests): one initialiser at a time",
    ("idb.schema.init_idb",),
)
WATCHDOG = AdvisoryLock(
    "watchdog",
    0x67696D5F776174,  # "gim_wat"
    "one watchdog pass at a time across web replicas and `gim watchdog` processes: the others "
    "skip their pass (try-lock), so an incident is judged once (O2)",
    ("monitor.watchdog.check",),
)

LOGIN = AdvisoryLock(
    "login",
    0x67696D6C,  # "giml"
    "one account's login attempts through count-and-reserve, so concurrent wrong passwords "
    "cannot all pass a count taken before any was recorded (issue 41); the second key is "
    "table_key of the account name",
    ("web.security.LoginThrottle",),
    per_table=True,
)

LOCKS = (
    ADMISSION,
    OPTIONS,
    PARTITIONS,
    PURGE,
    AGGREGATE_TABLES,
    AGGREGATE_WRITE,
    MIGRATION,
    STAGING_WRITE,
    IDB_INIT,
    WATCHDOG,
    LOGIN,
)


def table_key(table: str) -> int:
    """The second key of a per-table lock: a stable signed 32-bit hash of the table's name."""
    return zlib.crc32(table.encode()) - 2**31


def hold(conn: Any, lock: AdvisoryLock, table: str | None = None, shared: bool = False) -> None:
    """Take ``lock`` until the end of ``conn``'s transaction (waits for it). ``table``: the
    staging table of a per-table lock; ``shared``: the shared mode (readers of the purge)."""
    import sqlalchemy as sa

    take = sa.func.pg_advisory_xact_lock_shared if shared else sa.func.pg_advisory_xact_lock
    conn.execute(sa.select(take(*_keys(lock, table))))


def _keys(lock: AdvisoryLock, table: str | None) -> tuple[int, ...]:
    if lock.session:
        raise ValueError(f"the {lock.name} lock is session-scoped: use hold_session")
    if lock.per_table != (table is not None):
        raise ValueError(f"the {lock.name} lock {'needs' if lock.per_table else 'takes no'} table")
    return (lock.key, table_key(table)) if table is not None else (lock.key,)


def try_hold(conn: Any, lock: AdvisoryLock, table: str | None = None) -> bool:
    """Take ``lock`` until the end of ``conn``'s transaction if it is free; False (without
    waiting) when another transaction holds it. ``table`` as for :func:`hold`."""
    import sqlalchemy as sa

    keys = _keys(lock, table)
    return bool(conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(*keys))).scalar_one())


def hold_session(conn: Any, lock: AdvisoryLock) -> None:
    """Take a session-scoped ``lock`` (waits for it); :func:`release_session` gives it back."""
    import sqlalchemy as sa

    conn.execute(sa.select(sa.func.pg_advisory_lock(lock.key)))


def release_session(conn: Any, lock: AdvisoryLock) -> None:
    import sqlalchemy as sa

    conn.execute(sa.select(sa.func.pg_advisory_unlock(lock.key)))
