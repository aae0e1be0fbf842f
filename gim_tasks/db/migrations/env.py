"""Alembic environment: runs on the connection handed over by ``gim_tasks.db.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from gim_tasks.db import mart_tables  # noqa: F401 - registers the Info Mart tables
from gim_tasks.db.tables import metadata

# Any constant shared by all gim-tasks processes: the advisory lock that serialises migrations,
# so two pods running `gim db upgrade` at once do not both apply a revision.
MIGRATION_LOCK_KEY = 0x67696D5F6D6967  # "gim_mig"

connection = context.config.attributes["connection"]
connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
try:
    context.configure(
        connection=connection, target_metadata=metadata, transaction_per_migration=True
    )
    with context.begin_transaction():
        context.run_migrations()
finally:
    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
