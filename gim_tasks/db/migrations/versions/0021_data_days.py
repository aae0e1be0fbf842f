"""Data days (issue 37, SPEC Q1, Q2): the incident conditions ``deadline``,
``deadline-at-risk`` and ``incomplete-day`` (their subject is ``data day YYYY-MM-DD``: one open
per day and condition, by the existing partial unique index).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 20:10:00
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

BEFORE = (
    "'blocked', 'failure', 'missed', 'late', 'stale-data', 'scheduler-down', 'paused', "
    "'time-limit', 'slow', 'collision-ahead'"
)
AFTER = BEFORE + ", 'deadline', 'deadline-at-risk', 'incomplete-day'"


def _check(values: str) -> None:
    op.drop_constraint(op.f("ck_incident_condition"), "incident", type_="check")
    op.create_check_constraint(
        op.f("ck_incident_condition"), "incident", f"condition IN ({values})"
    )


def upgrade() -> None:
    _check(AFTER)


def downgrade() -> None:
    op.execute(
        "DELETE FROM incident WHERE condition IN ('deadline', 'deadline-at-risk', 'incomplete-day')"
    )
    _check(BEFORE)
