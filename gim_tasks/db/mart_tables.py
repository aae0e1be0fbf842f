"""Info Mart tables: IDB sources and extraction marks, staging, dimensions, DATE_TIME, facts,
discards (SPEC §1, D1, D2, R3).

Staging tables are generated from the IDB schema (one per IDB table, plus the source IDB and
``load_seq``, the position of the row version in the order staging was written; Transform
keeps a mark per source in ``transform_mark``). Facts are partitioned by UTC day on their
start timestamp (D2); day partitions are created on demand by Transform and ahead of time by
maintenance.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    SmallInteger,
    Table,
    Text,
    Time,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from gim_tasks.db.tables import metadata
from gim_tasks.idb import schema as idb

#: The IDB databases seen so far; ``idb_id`` is what staging, facts and marks refer to.
idb_source = Table(
    "idb_source",
    metadata,
    Column("idb_id", SmallInteger, Identity(), primary_key=True),
    Column("name", Text, nullable=False, unique=True),  # host:port/database, no credentials
)

#: Extraction high-water marks per IDB and table (D1): the snapshot of the last complete
#: extraction, and of one in progress with the last id it committed.
extract_mark = Table(
    "extract_mark",
    metadata,
    Column("idb_id", SmallInteger, primary_key=True),
    Column("table_name", Text, primary_key=True),
    Column("done_snapshot", Text),
    Column("pending_snapshot", Text),
    Column("pending_last_id", BigInteger),
    Column("rows_extracted", BigInteger, nullable=False, server_default=text("0")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)


def _staging(source: Table) -> Table:
    columns = [Column("idb_id", SmallInteger, primary_key=True)]
    for column in source.columns:
        if column.name == "id":
            columns.append(Column("id", BigInteger, primary_key=True, autoincrement=False))
        elif column.name == "change_xid":
            columns.append(Column("change_xid", BigInteger, nullable=False))
        else:
            columns.append(Column(column.name, column.type, nullable=True))
    name = f"stg_{source.name}"
    return Table(
        name,
        metadata,
        *columns,
        # Staging writers are serialised (an advisory xact lock in Extract), so load_seq order
        # is commit order and Transform's mark never skips a row that commits late.
        Column(
            "load_seq",
            BigInteger,
            nullable=False,
            server_default=text("nextval('staging_load_seq')"),
        ),
        Column(
            "extracted_at", DateTime(timezone=True), nullable=False, server_default=text("now()")
        ),
        Index(f"ix_{name}_load_seq", "load_seq"),
    )


STAGING: dict[str, Table] = {table.name: _staging(table) for table in idb.TABLES}


#: Transform's progress per staging source: every row with load_seq <= last_load_seq is loaded.
transform_mark = Table(
    "transform_mark",
    metadata,
    Column("source", Text, primary_key=True),
    Column("last_load_seq", BigInteger, nullable=False, server_default=text("0")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)


def _dimension(name: str, *columns: Column[Any]) -> Table:
    return Table(
        name,
        metadata,
        Column(f"{name.removeprefix('dim_')}_key", Integer, Identity(), primary_key=True),
        Column("idb_id", SmallInteger, nullable=False),
        Column("source_id", BigInteger, nullable=False),
        *columns,
        UniqueConstraint("idb_id", "source_id", name=f"uq_{name}_source"),
    )


dim_media_type = _dimension("dim_media_type", Column("name", Text))
dim_agent = _dimension(
    "dim_agent",
    Column("login", Text),
    Column("first_name", Text),
    Column("last_name", Text),
    Column("agent_group", Text),
)
dim_queue = _dimension(
    "dim_queue",
    Column("name", Text),
    Column("queue_group", Text),
    Column("media_type", Text),
    Column("service_level_seconds", Integer),
)
dim_campaign = _dimension("dim_campaign", Column("name", Text))
dim_state_reason = _dimension("dim_state_reason", Column("code", Text), Column("name", Text))
dim_business_attribute = _dimension(
    "dim_business_attribute", Column("kind", Text), Column("value", Text)
)

#: DATE_TIME at 15-minute grain; the key is the UTC epoch second of the interval start. Local
#: attributes are in the schedule's time zone (S10: local midnight ends the reporting day).
date_time = Table(
    "date_time",
    metadata,
    Column("date_time_key", BigInteger, primary_key=True, autoincrement=False),
    Column("start_utc", DateTime(timezone=True), nullable=False),
    Column("time_zone", Text, nullable=False),
    Column("local_date", Date, nullable=False),
    Column("local_time", Time, nullable=False),
    Column("local_hour", SmallInteger, nullable=False),
    Column("day_of_week", SmallInteger, nullable=False),  # ISO: 1 = Monday
    Column("month", SmallInteger, nullable=False),
    Column("quarter", SmallInteger, nullable=False),
    Column("year", SmallInteger, nullable=False),
)


#: Custom calendars (SPEC §2 [gim-etl], GIM "custom calendars"): one per extra time zone.
date_time_extra = Table(
    "date_time_extra",
    metadata,
    Column("calendar", Text, primary_key=True),  # the IANA zone name
    Column("date_time_key", BigInteger, primary_key=True, autoincrement=False),
    Column("local_date", Date, nullable=False),
    Column("local_time", Time, nullable=False),
    Column("local_hour", SmallInteger, nullable=False),
    Column("day_of_week", SmallInteger, nullable=False),
    Column("month", SmallInteger, nullable=False),
    Column("quarter", SmallInteger, nullable=False),
    Column("year", SmallInteger, nullable=False),
)


def _fact(name: str, id_column: str, *columns: Column[Any]) -> Table:
    return Table(
        name,
        metadata,
        Column("idb_id", SmallInteger, primary_key=True),
        Column(id_column, BigInteger, primary_key=True, autoincrement=False),
        Column("start_ts", DateTime(timezone=True), primary_key=True),
        Column("date_time_key", BigInteger, nullable=False),
        *columns,
        Column("run_id", BigInteger),
        # Aggregation reads the facts of changed 15-minute intervals.
        Index(f"ix_{name}_date_time_key", "date_time_key"),
        postgresql_partition_by="RANGE (start_ts)",
    )


interaction_fact = _fact(
    "interaction_fact",
    "interaction_id",
    Column("end_ts", DateTime(timezone=True)),
    Column("media_type_key", Integer),
    Column("direction", Text),
    Column("customer_segment_key", Integer),
    Column("service_type_key", Integer),
    Column("status", Text),
    Column("duration_seconds", Integer),
)
interaction_segment_fact = _fact(
    "interaction_segment_fact",
    "segment_id",
    Column("interaction_id", BigInteger),
    Column("seq", SmallInteger),
    Column("end_ts", DateTime(timezone=True)),
    Column("queue_key", Integer),
    Column("agent_key", Integer),
    Column("outcome", Text),
    Column("wait_seconds", Integer),
    Column("ring_seconds", Integer),
    Column("talk_seconds", Integer),
    Column("hold_seconds", Integer),
    Column("wrap_seconds", Integer),
    Column("answered_in_service_level", Boolean),
)
agent_session_fact = _fact(
    "agent_session_fact",
    "session_id",
    Column("end_ts", DateTime(timezone=True)),
    Column("agent_key", Integer),
    Column("duration_seconds", Integer),
)
agent_state_fact = _fact(
    "agent_state_fact",
    "state_id",
    Column("end_ts", DateTime(timezone=True)),
    Column("session_id", BigInteger),
    Column("agent_key", Integer),
    Column("state", Text),
    Column("duration_seconds", Integer),
)
agent_state_reason_fact = _fact(
    "agent_state_reason_fact",
    "state_id",
    Column("end_ts", DateTime(timezone=True)),
    Column("agent_key", Integer),
    Column("state_reason_key", Integer),
    Column("duration_seconds", Integer),
)
campaign_attempt_fact = _fact(
    "campaign_attempt_fact",
    "attempt_id",
    Column("campaign_key", Integer),
    Column("agent_key", Integer),
    Column("result", Text),
    Column("talk_seconds", Integer),
)

FACTS: tuple[Table, ...] = (
    interaction_fact,
    interaction_segment_fact,
    agent_session_fact,
    agent_state_fact,
    agent_state_reason_fact,
    campaign_attempt_fact,
)

#: Job_ExportGIM's progress (D4): everything before exported_through is in a chunk on disk.
export_mark = Table(
    "export_mark",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("exported_through", DateTime(timezone=True), nullable=False),
    Column("last_chunk", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)


def exported_through(conn: Any) -> datetime | None:
    """The export's mark (D4): everything before it is in a chunk on disk; None before the
    first export. One reading for the export job, back-fills and the Days grid."""
    return conn.execute(select(export_mark.c.exported_through)).scalar_one_or_none()


#: Intervals whose facts changed since aggregation last saw them (Transform adds, the
#: aggregation job consumes in the transaction that rewrites their aggregates).
agg_pending = Table(
    "agg_pending",
    metadata,
    Column("fact", Text, primary_key=True),
    Column("date_time_key", BigInteger, primary_key=True, autoincrement=False),
)

#: Re-aggregation requests (M4), processed in order by the running aggregation.
agg_request = Table(
    "agg_request",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("params", JSONB, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("done_at", DateTime(timezone=True)),
    Column("run_id", BigInteger),
    #: D5: why the aggregation job refused the request when it came to it (nothing deleted).
    Column("refused", Text),
)

#: D5: the instant before which maintenance removed facts (``facts``: whole day partitions
#: dropped) or aggregates below DAY (``aggregates``). Retention options may be raised after a
#: purge; the mark keeps "the oldest day still held" true.
purge_mark = Table(
    "purge_mark",
    metadata,
    Column("what", Text, primary_key=True),
    Column("purged_before", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    CheckConstraint("what IN ('facts', 'aggregates')", name="what"),
)

#: Source rows Transform could not load, with the reason (R3).
discard = Table(
    "discard",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("run_id", BigInteger),
    Column("idb_id", SmallInteger, nullable=False),
    Column("source_table", Text, nullable=False),
    Column("source_id", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("discarded_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    UniqueConstraint("idb_id", "source_table", "source_id", name="uq_discard_source"),
)
