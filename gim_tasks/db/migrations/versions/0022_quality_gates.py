"""Quality gates (issue 37, SPEC Q3): ``quality_check`` (the newest verdict of each check on
each subject and interval, with an admin's override), ``export_hold`` (export chunks held by a
failing check) and the incident condition ``check-failed`` (subject ``data day YYYY-MM-DD``).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 22:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

BEFORE = (
    "'blocked', 'failure', 'missed', 'late', 'stale-data', 'scheduler-down', 'paused', "
    "'time-limit', 'slow', 'collision-ahead', 'deadline', 'deadline-at-risk', 'incomplete-day'"
)
AFTER = BEFORE + ", 'check-failed'"


def _check(values: str) -> None:
    op.drop_constraint(op.f("ck_incident_condition"), "incident", type_="check")
    op.create_check_constraint(
        op.f("ck_incident_condition"), "incident", f"condition IN ({values})"
    )


def _at(name: str, nullable: bool = True, **kw: object) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    _check(AFTER)
    op.create_table(
        "quality_check",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        _at("start_ts", nullable=False),
        _at("end_ts", nullable=False),
        sa.Column("severity", sa.Text(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("measured", sa.Text(), nullable=False),
        sa.Column("bound", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        _at("checked_at", nullable=False, server_default=sa.text("now()")),
        _at("overridden_at"),
        sa.Column("overridden_by", sa.Text()),
        sa.Column("override_reason", sa.Text()),
        sa.CheckConstraint("severity IN ('warn', 'error')", name=op.f("ck_quality_check_severity")),
        sa.CheckConstraint(
            "overridden_at IS NULL OR length(btrim(override_reason)) > 0",
            name=op.f("ck_quality_check_override_reason"),
        ),
        sa.CheckConstraint("end_ts > start_ts", name=op.f("ck_quality_check_interval")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_check")),
        sa.UniqueConstraint(
            "name", "subject", "start_ts", "end_ts", name=op.f("uq_quality_check_scope")
        ),
    )
    op.create_index("ix_quality_check_day", "quality_check", ["day"])
    op.create_table(
        "export_hold",
        _at("chunk_start", nullable=False),
        _at("chunk_end", nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _at("held_at", nullable=False, server_default=sa.text("now()")),
        sa.Column("held_by_run", sa.BigInteger()),
        _at("released_at"),
        sa.Column("released_by_run", sa.BigInteger()),
        sa.Column("release", sa.Text()),
        sa.CheckConstraint(
            "release IN ('passed', 'override')", name=op.f("ck_export_hold_release")
        ),
        sa.PrimaryKeyConstraint("chunk_start", name=op.f("pk_export_hold")),
    )
    op.create_index(
        "ix_export_hold_open",
        "export_hold",
        ["chunk_start"],
        postgresql_where=sa.text("released_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("export_hold")
    op.drop_table("quality_check")
    op.execute("DELETE FROM incident WHERE condition = 'check-failed'")
    _check(BEFORE)
