"""Operator control of the plan (issue 34, SPEC P1-P5): paused jobs, skipped firings,
blackout windows, runs planned at a set time; the ledger's verdicts ``paused``,
``operator-skip``, ``blackout`` and ``cancelled``; the incident condition ``paused``.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 16:20:00

- ``job_pause``: one row per paused job, ``*`` for a global pause (each job's own row stays);
  ``until`` is when the beat resumes it; ``source`` ``operator`` or ``failures`` (P5).
- ``firing_skip``: one future firing skipped by an operator (P2).
- ``blackout``: named windows in the schedule's zone (P3).
- ``run_at``: one manual run planned at a set instant (P4), with its firing id ``at:JOB:ISO``
  (also its ledger row's), its state (``planned``, ``started``, ``cancelled``, ``missed``) and
  the run it started.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

VERDICTS_BEFORE = "'on-time', 'late', 'held', 'skipped', 'blocked', 'missed'"
VERDICTS_AFTER = VERDICTS_BEFORE + ", 'paused', 'operator-skip', 'blackout', 'cancelled'"
CONDITIONS_BEFORE = "'blocked', 'failure', 'missed', 'late', 'stale-data', 'scheduler-down'"
CONDITIONS_AFTER = CONDITIONS_BEFORE + ", 'paused'"


def _check(table: str, column: str, values: str) -> None:
    op.drop_constraint(op.f(f"ck_{table}_{column}"), table, type_="check")
    op.create_check_constraint(op.f(f"ck_{table}_{column}"), table, f"{column} IN ({values})")


def upgrade() -> None:
    op.create_table(
        "job_pause",
        sa.Column("job", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column(
            "paused_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), server_default=sa.text("'operator'"), nullable=False),
        sa.CheckConstraint("length(btrim(reason)) > 0", name=op.f("ck_job_pause_reason")),
        sa.CheckConstraint("source IN ('operator', 'failures')", name=op.f("ck_job_pause_source")),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_job_pause")),
    )
    op.create_table(
        "firing_skip",
        sa.Column("firing_id", sa.Text(), nullable=False),
        sa.Column("job", sa.Text(), nullable=False),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("length(btrim(reason)) > 0", name=op.f("ck_firing_skip_reason")),
        sa.PrimaryKeyConstraint("firing_id", name=op.f("pk_firing_skip")),
    )
    op.create_table(
        "blackout",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("starts", sa.Text(), nullable=True),
        sa.Column("ends", sa.Text(), nullable=True),
        sa.Column("weekly", sa.Text(), nullable=True),
        sa.Column("days", sa.Integer(), nullable=True),
        sa.Column(
            "jobs", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('once', 'weekly', 'month-end')", name=op.f("ck_blackout_kind")
        ),
        sa.CheckConstraint("length(btrim(reason)) > 0", name=op.f("ck_blackout_reason")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_blackout")),
    )
    op.create_table(
        "run_at",
        sa.Column("firing_id", sa.Text(), nullable=False),
        sa.Column("job", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("params", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("force", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), server_default=sa.text("'planned'"), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state IN ('planned', 'started', 'cancelled', 'missed')", name=op.f("ck_run_at_state")
        ),
        sa.CheckConstraint("length(btrim(reason)) > 0", name=op.f("ck_run_at_reason")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["job_run.id"], name=op.f("fk_run_at_run_id_job_run"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("firing_id", name=op.f("pk_run_at")),
    )
    op.create_index(
        "ix_run_at_planned", "run_at", ["at"], postgresql_where=sa.text("state = 'planned'")
    )
    _check("firing", "verdict", VERDICTS_AFTER)
    _check("incident", "condition", CONDITIONS_AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM incident WHERE condition = 'paused'")
    op.execute(
        "UPDATE firing SET verdict = 'skipped' WHERE verdict IN ('paused', 'operator-skip', 'blackout')"
    )
    _check("incident", "condition", CONDITIONS_BEFORE)
    _check("firing", "verdict", VERDICTS_BEFORE)
    op.drop_index("ix_run_at_planned", table_name="run_at")
    op.drop_table("run_at")
    op.drop_table("blackout")
    op.drop_table("firing_skip")
    op.drop_table("job_pause")
