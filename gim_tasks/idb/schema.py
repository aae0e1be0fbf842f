"""The IDB schema: configuration, interactions and party segments, agent sessions and states,
campaign attempts.

Every table carries ``change_xid``: the id of the transaction that last wrote the row (set by
a trigger on insert and update). Extraction reads rows whose ``change_xid`` was not visible in
the snapshot of the previous extraction, so a row whose transaction committed late (after rows
with higher ids) is still found (SPEC D1); see ``gim_tasks.jobs.extract``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.types import UserDefinedType

from gim_tasks.db import locks

metadata = MetaData()
SCHEMA_VERSION = 1


class Xid8(UserDefinedType[int]):
    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "xid8"


def _table(name: str, *columns: Column[Any]) -> Table:
    return Table(
        name,
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        *columns,
        Column("change_xid", Xid8(), nullable=False, server_default=text("pg_current_xact_id()")),
        # Extraction reads only rows changed at or after the previous snapshot's xmin.
        Index(f"ix_{name}_change_xid", "change_xid"),
    )


def _ts(name: str, nullable: bool = True) -> Column[Any]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


# Configuration.
media_type = _table("media_type", Column("name", Text, nullable=False))
agent_group = _table("agent_group", Column("name", Text, nullable=False))
agent = _table(
    "agent",
    Column("login", Text, nullable=False),
    Column("first_name", Text),
    Column("last_name", Text),
    Column("agent_group_id", BigInteger),
)
queue_group = _table("queue_group", Column("name", Text, nullable=False))
queue = _table(
    "queue",
    Column("name", Text, nullable=False),
    Column("queue_group_id", BigInteger),
    Column("media_type_id", BigInteger),
    Column("service_level_seconds", Integer, nullable=False, server_default="20"),
)
campaign = _table("campaign", Column("name", Text, nullable=False))
state_reason = _table(
    "state_reason", Column("code", Text, nullable=False), Column("name", Text, nullable=False)
)
business_attribute = _table(
    "business_attribute",
    Column("kind", Text, nullable=False),
    Column("value", Text, nullable=False),
)

# Traffic.
interaction = _table(
    "interaction",
    Column("media_type_id", BigInteger),
    Column("direction", Text),
    Column("customer_segment_id", BigInteger),
    Column("service_type_id", BigInteger),
    _ts("created_at", False),
    _ts("ended_at"),
    Column("status", Text, nullable=False),
)
party_segment = _table(
    "party_segment",
    Column("interaction_id", BigInteger, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("queue_id", BigInteger),
    Column("agent_id", BigInteger),
    _ts("queued_at"),
    _ts("routed_at"),
    _ts("ringing_at"),
    _ts("talk_start_at"),
    Column("hold_seconds", Integer),
    _ts("wrap_start_at"),
    _ts("ended_at"),
    Column("outcome", Text),
)
agent_session = _table(
    "agent_session", Column("agent_id", BigInteger), _ts("login_at"), _ts("logout_at")
)
agent_state = _table(
    "agent_state",
    Column("session_id", BigInteger),
    Column("agent_id", BigInteger),
    Column("state", Text),
    Column("reason_id", BigInteger),
    _ts("started_at"),
    _ts("ended_at"),
)
campaign_attempt = _table(
    "campaign_attempt",
    Column("campaign_id", BigInteger),
    Column("agent_id", BigInteger),
    _ts("dialed_at"),
    Column("result", Text),
    Column("talk_seconds", Integer),
)

#: Tables in extraction order (configuration first).
TABLES: tuple[Table, ...] = tuple(metadata.sorted_tables)

_TRIGGER = """
CREATE OR REPLACE FUNCTION gim_set_change_xid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.change_xid := pg_current_xact_id();
  RETURN NEW;
END $$;
"""


def init_idb(engine: Engine) -> list[str]:
    """Create (or complete) the IDB schema; idempotent. Returns the tables created."""
    with engine.begin() as conn:
        locks.hold(conn, locks.IDB_INIT)  # one initialiser at a time
        existing = set(conn.dialect.get_table_names(conn))
        metadata.create_all(conn)
        conn.execute(text(_TRIGGER))
        for table in TABLES:
            conn.execute(
                text(f"""
                CREATE OR REPLACE TRIGGER {table.name}_change_xid
                BEFORE UPDATE ON {table.name} FOR EACH ROW EXECUTE FUNCTION gim_set_change_xid()
            """)
            )
        conn.execute(text("CREATE TABLE IF NOT EXISTS idb_schema_version (version int NOT NULL)"))
        conn.execute(text("DELETE FROM idb_schema_version"))
        conn.execute(text("INSERT INTO idb_schema_version VALUES (:v)"), {"v": SCHEMA_VERSION})
    return [t.name for t in TABLES if t.name not in existing]
