"""Aggregation queue and re-aggregation requests (SPEC S7, M4). Aggregate tables themselves
are generated from the hierarchy registry by the aggregation job.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 22:50:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agg_pending",
        sa.Column("fact", sa.Text(), nullable=False),
        sa.Column("date_time_key", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("fact", "date_time_key", name=op.f("pk_agg_pending")),
    )
    op.create_table(
        "agg_request",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("params", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column(
            "requested_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agg_request")),
    )


def downgrade() -> None:
    op.drop_table("agg_request")
    op.drop_table("agg_pending")
