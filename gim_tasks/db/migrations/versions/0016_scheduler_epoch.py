"""The instant a beat first ran against this database (issue 31: no false alarm at the first
start).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 13:00:00

- ``scheduler_epoch``: one row, written by the first beat tick ever (``INSERT ... ON CONFLICT
  DO NOTHING``: of two beats starting at once, the first to commit sets it). The ledger never
  plans or judges a firing planned before it (runtime/ledger.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_epoch",
        sa.Column("id", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("first_tick_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id", name=op.f("ck_scheduler_epoch_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduler_epoch")),
    )


def downgrade() -> None:
    op.drop_table("scheduler_epoch")
