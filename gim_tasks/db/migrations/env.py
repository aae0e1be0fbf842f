"""Alembic environment: runs on the connection handed over by ``gim_tasks.db.migrate``."""

from __future__ import annotations

import re

from alembic import context
from sqlalchemy import text

from gim_tasks.db import mart_tables  # noqa: F401 - registers the Info Mart tables
from gim_tasks.db.tables import metadata

# Any constant shared by all gim-tasks processes: the advisory lock that serialises migrations,
# so two pods running `gim db upgrade` at once do not both apply a revision.
MIGRATION_LOCK_KEY = 0x67696D5F6D6967  # "gim_mig"

PARTITION = re.compile(r"_p\d{8}$")


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Day partitions are made at run time (Transform, maintenance), never by migrations:
    autogenerate must neither create nor drop them."""
    return not (type_ == "table" and name is not None and PARTITION.search(name))


connection = context.config.attributes["connection"]
connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
try:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        transaction_per_migration=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()
finally:
    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
