"""Core tables: operator options and their change log, job runs (SPEC §2, R1, S2, S11).

Revision ID: 0001
Revises:
Create Date: 2026-11-22 21:24:43.693264
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_run",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("job", sa.Text(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column(
            "params",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("firing_id", sa.Text(), nullable=True),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.Text(), nullable=True),
        sa.Column("rows_read", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("rows_written", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("rows_discarded", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("warnings", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "summary",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("forced", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("fencing_token", sa.BigInteger(), nullable=True),
        sa.Column("task_id", sa.Text(), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('Scheduled', 'Running', 'Completed', 'Completed with warnings', 'Failed', 'Stopped', 'Cancelled', 'Rejected')",
            name=op.f("ck_job_run_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_run")),
    )
    op.create_index("ix_job_run_job_created", "job_run", ["job", "created_at"], unique=False)
    op.create_index("ix_job_run_state", "job_run", ["state"], unique=False)
    op.create_index(
        "uq_job_run_firing_id",
        "job_run",
        ["firing_id"],
        unique=True,
        postgresql_where=sa.text("firing_id IS NOT NULL"),
    )
    op.create_index(
        "uq_job_run_one_running",
        "job_run",
        ["job"],
        unique=True,
        postgresql_where=sa.text("state = 'Running'"),
    )
    op.create_table(
        "option_change",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("section", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("changed_by", sa.Text(), nullable=False),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_option_change")),
    )
    op.create_table(
        "option_value",
        sa.Column("section", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("changed_by", sa.Text(), nullable=False),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("section", "name", name=op.f("pk_option_value")),
    )


def downgrade() -> None:
    op.drop_table("option_value")
    op.drop_table("option_change")
    op.drop_index(
        "uq_job_run_one_running",
        table_name="job_run",
        postgresql_where=sa.text("state = 'Running'"),
    )
    op.drop_index(
        "uq_job_run_firing_id",
        table_name="job_run",
        postgresql_where=sa.text("firing_id IS NOT NULL"),
    )
    op.drop_index("ix_job_run_state", table_name="job_run")
    op.drop_index("ix_job_run_job_created", table_name="job_run")
    op.drop_table("job_run")
