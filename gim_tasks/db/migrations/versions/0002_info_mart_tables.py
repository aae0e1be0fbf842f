"""Info Mart tables: IDB sources, extraction and transform marks, staging, dimensions,
DATE_TIME, facts (partitioned by day), discards (SPEC D1, D2, R3).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 22:06:05.513236
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Shared by every staging table: the order in which staging row versions were written.
    op.execute("CREATE SEQUENCE staging_load_seq")
    op.create_table(
        "agent_session_fact",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("session_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("start_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("date_time_key", sa.BigInteger(), nullable=False),
        sa.Column("end_ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("agent_key", sa.Integer(), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint(
            "idb_id", "session_id", "start_ts", name=op.f("pk_agent_session_fact")
        ),
        postgresql_partition_by="RANGE (start_ts)",
    )
    op.create_table(
        "agent_state_fact",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("state_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("start_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("date_time_key", sa.BigInteger(), nullable=False),
        sa.Column("end_ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("session_id", sa.BigInteger(), nullable=True),
        sa.Column("agent_key", sa.Integer(), nullable=True),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("idb_id", "state_id", "start_ts", name=op.f("pk_agent_state_fact")),
        postgresql_partition_by="RANGE (start_ts)",
    )
    op.create_table(
        "agent_state_reason_fact",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("state_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("start_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("date_time_key", sa.BigInteger(), nullable=False),
        sa.Column("end_ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("agent_key", sa.Integer(), nullable=True),
        sa.Column("state_reason_key", sa.Integer(), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint(
            "idb_id", "state_id", "start_ts", name=op.f("pk_agent_state_reason_fact")
        ),
        postgresql_partition_by="RANGE (start_ts)",
    )
    op.create_table(
        "campaign_attempt_fact",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("attempt_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("start_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("date_time_key", sa.BigInteger(), nullable=False),
        sa.Column("campaign_key", sa.Integer(), nullable=True),
        sa.Column("agent_key", sa.Integer(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("talk_seconds", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint(
            "idb_id", "attempt_id", "start_ts", name=op.f("pk_campaign_attempt_fact")
        ),
        postgresql_partition_by="RANGE (start_ts)",
    )
    op.create_table(
        "date_time",
        sa.Column("date_time_key", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("start_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("time_zone", sa.Text(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("local_time", sa.Time(), nullable=False),
        sa.Column("local_hour", sa.SmallInteger(), nullable=False),
        sa.Column("day_of_week", sa.SmallInteger(), nullable=False),
        sa.Column("month", sa.SmallInteger(), nullable=False),
        sa.Column("quarter", sa.SmallInteger(), nullable=False),
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("date_time_key", name=op.f("pk_date_time")),
    )
    op.create_table(
        "dim_agent",
        sa.Column("agent_key", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.Column("login", sa.Text(), nullable=True),
        sa.Column("first_name", sa.Text(), nullable=True),
        sa.Column("last_name", sa.Text(), nullable=True),
        sa.Column("agent_group", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("agent_key", name=op.f("pk_dim_agent")),
        sa.UniqueConstraint("idb_id", "source_id", name="uq_dim_agent_source"),
    )
    op.create_table(
        "dim_business_attribute",
        sa.Column(
            "business_attribute_key", sa.Integer(), sa.Identity(always=False), nullable=False
        ),
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=True),
        sa.Column("value", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("business_attribute_key", name=op.f("pk_dim_business_attribute")),
        sa.UniqueConstraint("idb_id", "source_id", name="uq_dim_business_attribute_source"),
    )
    op.create_table(
        "dim_campaign",
        sa.Column("campaign_key", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("campaign_key", name=op.f("pk_dim_campaign")),
        sa.UniqueConstraint("idb_id", "source_id", name="uq_dim_campaign_source"),
    )
    op.create_table(
        "dim_media_type",
        sa.Column("media_type_key", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("media_type_key", name=op.f("pk_dim_media_type")),
        sa.UniqueConstraint("idb_id", "source_id", name="uq_dim_media_type_source"),
    )
    op.create_table(
        "dim_queue",
        sa.Column("queue_key", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("queue_group", sa.Text(), nullable=True),
        sa.Column("media_type", sa.Text(), nullable=True),
        sa.Column("service_level_seconds", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("queue_key", name=op.f("pk_dim_queue")),
        sa.UniqueConstraint("idb_id", "source_id", name="uq_dim_queue_source"),
    )
    op.create_table(
        "dim_state_reason",
        sa.Column("state_reason_key", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("state_reason_key", name=op.f("pk_dim_state_reason")),
        sa.UniqueConstraint("idb_id", "source_id", name="uq_dim_state_reason_source"),
    )
    op.create_table(
        "discard",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("source_table", sa.Text(), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "discarded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discard")),
        sa.UniqueConstraint("idb_id", "source_table", "source_id", name="uq_discard_source"),
    )
    op.create_table(
        "extract_mark",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("done_snapshot", sa.Text(), nullable=True),
        sa.Column("pending_snapshot", sa.Text(), nullable=True),
        sa.Column("pending_last_id", sa.BigInteger(), nullable=True),
        sa.Column("rows_extracted", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("idb_id", "table_name", name=op.f("pk_extract_mark")),
    )
    op.create_table(
        "idb_source",
        sa.Column("idb_id", sa.SmallInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("idb_id", name=op.f("pk_idb_source")),
        sa.UniqueConstraint("name", name=op.f("uq_idb_source_name")),
    )
    op.create_table(
        "interaction_fact",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("interaction_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("start_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("date_time_key", sa.BigInteger(), nullable=False),
        sa.Column("end_ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("media_type_key", sa.Integer(), nullable=True),
        sa.Column("direction", sa.Text(), nullable=True),
        sa.Column("customer_segment_key", sa.Integer(), nullable=True),
        sa.Column("service_type_key", sa.Integer(), nullable=True),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint(
            "idb_id", "interaction_id", "start_ts", name=op.f("pk_interaction_fact")
        ),
        postgresql_partition_by="RANGE (start_ts)",
    )
    op.create_table(
        "interaction_segment_fact",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("segment_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("start_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("date_time_key", sa.BigInteger(), nullable=False),
        sa.Column("interaction_id", sa.BigInteger(), nullable=True),
        sa.Column("seq", sa.SmallInteger(), nullable=True),
        sa.Column("end_ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queue_key", sa.Integer(), nullable=True),
        sa.Column("agent_key", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("wait_seconds", sa.Integer(), nullable=True),
        sa.Column("ring_seconds", sa.Integer(), nullable=True),
        sa.Column("talk_seconds", sa.Integer(), nullable=True),
        sa.Column("hold_seconds", sa.Integer(), nullable=True),
        sa.Column("wrap_seconds", sa.Integer(), nullable=True),
        sa.Column("answered_in_service_level", sa.Boolean(), nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint(
            "idb_id", "segment_id", "start_ts", name=op.f("pk_interaction_segment_fact")
        ),
        postgresql_partition_by="RANGE (start_ts)",
    )
    op.create_table(
        "stg_agent",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("login", sa.Text(), nullable=True),
        sa.Column("first_name", sa.Text(), nullable=True),
        sa.Column("last_name", sa.Text(), nullable=True),
        sa.Column("agent_group_id", sa.BigInteger(), nullable=True),
        sa.Column("change_xid", sa.BigInteger(), nullable=False),
        sa.Column(
            "load_seq",
            sa.BigInteger(),
            server_default=sa.text("nextval('staging_load_seq')"),
            nullable=False,
        ),
        sa.Column(
            "extracted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("idb_id", "id", name=op.f("pk_stg_agent")),
    )
    op.create_index("ix_stg_agent_load_seq", "stg_agent", ["load_seq"], unique=False)
    op.create_table(
        "stg_agent_group",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("change_xid", sa.BigInteger(), nullable=False),
        sa.Column(
            "load_seq",
            sa.BigInteger(),
            server_default=sa.text("nextval('staging_load_seq')"),
            nullable=False,
        ),
        sa.Column(
            "extracted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("idb_id", "id", name=op.f("pk_stg_agent_group")),
    )
    op.create_index("ix_stg_agent_group_load_seq", "stg_agent_group", ["load_seq"], unique=False)
    op.create_table(
        "stg_agent_session",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("agent_id", sa.BigInteger(), nullable=True),
        sa.Column("login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("logout_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("change_xid", sa.BigInteger(), nullable=False),
        sa.Column(
            "load_seq",
            sa.BigInteger(),
            server_default=sa.text("nextval('staging_load_seq')"),
            nullable=False,
        ),
        sa.Column(
            "extracted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("idb_id", "id", name=op.f("pk_stg_agent_session")),
    )
    op.create_index(
        "ix_stg_agent_session_load_seq", "stg_agent_session", ["load_seq"], unique=False
    )
    op.create_table(
        "stg_agent_state",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=True),
        sa.Column("agent_id", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column("reason_id", sa.BigInteger(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("change_xid", sa.BigInteger(), nullable=False),
        sa.Column(
            "load_seq",
            sa.BigInteger(),
            server_default=sa.text("nextval('staging_load_seq')"),
            nullable=False,
        ),
        sa.Column(
            "extracted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("idb_id", "id", name=op.f("pk_stg_agent_state")),
    )
    op.create_index("ix_stg_agent_state_load_seq", "stg_agent_state", ["load_seq"], unique=False)
    op.create_table(
        "stg_business_attribute",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.Text(), nullable=True),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("change_xid", sa.BigInteger(), nullable=False),
        sa.Column(
            "load_seq",
            sa.BigInteger(),
            server_default=sa.text("nextval('staging_load_seq')"),
            nullable=False,
        ),
        sa.Column(
            "extracted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("idb_id", "id", name=op.f("pk_stg_business_attribute")),
    )
    op.create_index(
        "ix_stg_business_attribute_load_seq", "stg_business_attribute", ["load_seq"], unique=False
    )
    op.create_table(
        "stg_campaign",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("change_xid", sa.BigInteger(), nullable=False),
        sa.Column(
            "load_seq",
            sa.BigInteger(),
            server_default=sa.text("nextval('staging_load_seq')"),
            nullable=False,
        ),
        sa.Column(
            "extracted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("idb_id", "id", name=op.f("pk_stg_campaign")),
    )
    op.create_index("ix_stg_campaign_load_seq", "stg_campaign", ["load_seq"], unique=False)
    op.create_table(
        "stg_campaign_attempt",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=True),
        sa.Column("agent_id", sa.BigInteger(), nullable=True),
        sa.Column("dialed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("talk_seconds", sa.Integer(), nullable=True),
        sa.Column("change_xid", sa.BigInteger(), nullable=False),
        sa.Column(
            "load_seq",
            sa.BigInteger(),
            server_default=sa.text("nextval('staging_load_seq')"),
            nullable=False,
        ),
        sa.Column(
            "extracted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("idb_id", "id", name=op.f("pk_stg_campaign_attempt")),
    )
    op.create_index(
        "ix_stg_campaign_attempt_load_seq", "stg_campaign_attempt", ["load_seq"], unique=False
    )
    op.create_table(
        "stg_interaction",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("media_type_id", sa.BigInteger(), nullable=True),
        sa.Column("direction", sa.Text(), nullable=True),
        sa.Column("customer_segment_id", sa.BigInteger(), nullable=True),
        sa.Column("service_type_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("change_xid", sa.BigInteger(), nullable=False),
        sa.Column(
            "load_seq",
            sa.BigInteger(),
            server_default=sa.text("nextval('staging_load_seq')"),
            nullable=False,
        ),
        sa.Column(
            "extracted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("idb_id", "id", name=op.f("pk_stg_interaction")),
    )
    op.create_index("ix_stg_interaction_load_seq", "stg_interaction", ["load_seq"], unique=False)
    op.create_table(
        "stg_media_type",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("change_xid", sa.BigInteger(), nullable=False),
        sa.Column(
            "load_seq",
            sa.BigInteger(),
            server_default=sa.text("nextval('staging_load_seq')"),
            nullable=False,
        ),
        sa.Column(
            "extracted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("idb_id", "id", name=op.f("pk_stg_media_type")),
    )
    op.create_index("ix_stg_media_type_load_seq", "stg_media_type", ["load_seq"], unique=False)
    op.create_table(
        "stg_party_segment",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("interaction_id", sa.BigInteger(), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("queue_id", sa.BigInteger(), nullable=True),
        sa.Column("agent_id", sa.BigInteger(), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("routed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ringing_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("talk_start_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hold_seconds", sa.Integer(), nullable=True),
        sa.Column("wrap_start_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("change_xid", sa.BigInteger(), nullable=False),
        sa.Column(
            "load_seq",
            sa.BigInteger(),
            server_default=sa.text("nextval('staging_load_seq')"),
            nullable=False,
        ),
        sa.Column(
            "extracted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("idb_id", "id", name=op.f("pk_stg_party_segment")),
    )
    op.create_index(
        "ix_stg_party_segment_load_seq", "stg_party_segment", ["load_seq"], unique=False
    )
    op.create_table(
        "stg_queue",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("queue_group_id", sa.BigInteger(), nullable=True),
        sa.Column("media_type_id", sa.BigInteger(), nullable=True),
        sa.Column("service_level_seconds", sa.Integer(), nullable=True),
        sa.Column("change_xid", sa.BigInteger(), nullable=False),
        sa.Column(
            "load_seq",
            sa.BigInteger(),
            server_default=sa.text("nextval('staging_load_seq')"),
            nullable=False,
        ),
        sa.Column(
            "extracted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("idb_id", "id", name=op.f("pk_stg_queue")),
    )
    op.create_index("ix_stg_queue_load_seq", "stg_queue", ["load_seq"], unique=False)
    op.create_table(
        "stg_queue_group",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("change_xid", sa.BigInteger(), nullable=False),
        sa.Column(
            "load_seq",
            sa.BigInteger(),
            server_default=sa.text("nextval('staging_load_seq')"),
            nullable=False,
        ),
        sa.Column(
            "extracted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("idb_id", "id", name=op.f("pk_stg_queue_group")),
    )
    op.create_index("ix_stg_queue_group_load_seq", "stg_queue_group", ["load_seq"], unique=False)
    op.create_table(
        "stg_state_reason",
        sa.Column("idb_id", sa.SmallInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("code", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("change_xid", sa.BigInteger(), nullable=False),
        sa.Column(
            "load_seq",
            sa.BigInteger(),
            server_default=sa.text("nextval('staging_load_seq')"),
            nullable=False,
        ),
        sa.Column(
            "extracted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("idb_id", "id", name=op.f("pk_stg_state_reason")),
    )
    op.create_index("ix_stg_state_reason_load_seq", "stg_state_reason", ["load_seq"], unique=False)
    op.create_table(
        "transform_mark",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("last_load_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_transform_mark")),
    )


def downgrade() -> None:
    op.drop_table("transform_mark")
    op.drop_index("ix_stg_state_reason_load_seq", table_name="stg_state_reason")
    op.drop_table("stg_state_reason")
    op.drop_index("ix_stg_queue_group_load_seq", table_name="stg_queue_group")
    op.drop_table("stg_queue_group")
    op.drop_index("ix_stg_queue_load_seq", table_name="stg_queue")
    op.drop_table("stg_queue")
    op.drop_index("ix_stg_party_segment_load_seq", table_name="stg_party_segment")
    op.drop_table("stg_party_segment")
    op.drop_index("ix_stg_media_type_load_seq", table_name="stg_media_type")
    op.drop_table("stg_media_type")
    op.drop_index("ix_stg_interaction_load_seq", table_name="stg_interaction")
    op.drop_table("stg_interaction")
    op.drop_index("ix_stg_campaign_attempt_load_seq", table_name="stg_campaign_attempt")
    op.drop_table("stg_campaign_attempt")
    op.drop_index("ix_stg_campaign_load_seq", table_name="stg_campaign")
    op.drop_table("stg_campaign")
    op.drop_index("ix_stg_business_attribute_load_seq", table_name="stg_business_attribute")
    op.drop_table("stg_business_attribute")
    op.drop_index("ix_stg_agent_state_load_seq", table_name="stg_agent_state")
    op.drop_table("stg_agent_state")
    op.drop_index("ix_stg_agent_session_load_seq", table_name="stg_agent_session")
    op.drop_table("stg_agent_session")
    op.drop_index("ix_stg_agent_group_load_seq", table_name="stg_agent_group")
    op.drop_table("stg_agent_group")
    op.drop_index("ix_stg_agent_load_seq", table_name="stg_agent")
    op.drop_table("stg_agent")
    op.drop_table("interaction_segment_fact")
    op.drop_table("interaction_fact")
    op.drop_table("idb_source")
    op.drop_table("extract_mark")
    op.drop_table("discard")
    op.drop_table("dim_state_reason")
    op.drop_table("dim_queue")
    op.drop_table("dim_media_type")
    op.drop_table("dim_campaign")
    op.drop_table("dim_business_attribute")
    op.drop_table("dim_agent")
    op.drop_table("date_time")
    op.drop_table("campaign_attempt_fact")
    op.drop_table("agent_state_reason_fact")
    op.drop_table("agent_state_fact")
    op.drop_table("agent_session_fact")
    op.execute("DROP SEQUENCE staging_load_seq")
