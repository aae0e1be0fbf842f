"""Alembic environment: runs on the connection handed over by ``gim_tasks.db.migrate``."""

from __future__ import annotations

import re

from alembic import context

from gim_tasks.db import (
    locks,
    mart_tables,  # noqa: F401 - registers the Info Mart tables
)
from gim_tasks.db.tables import metadata

PARTITION = re.compile(r"_p\d{8}$")


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Day partitions are made at run time (Transform, maintenance), never by migrations:
    autogenerate must neither create nor drop them."""
    return not (type_ == "table" and name is not None and PARTITION.search(name))


connection = context.config.attributes["connection"]
locks.hold_session(connection, locks.MIGRATION)  # two pods upgrading at once: one applies
try:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        transaction_per_migration=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()
    # Commit before the unlock below: the connection was in a transaction already (the lock's
    # statement began it), so alembic committed nothing itself; a commit after the unlock left
    # a window where a second pod took the lock and saw the schema unmigrated (issue 38 found
    # it by doing a little more work in that window).
    connection.commit()
except BaseException:
    # A failed statement leaves the transaction aborted: roll back first, so that the unlock
    # below runs and the real error is the one raised (it was hidden behind "current
    # transaction is aborted" from the unlock, seen once in CI's concurrent-upgrade test).
    connection.rollback()
    raise
finally:
    locks.release_session(connection, locks.MIGRATION)
