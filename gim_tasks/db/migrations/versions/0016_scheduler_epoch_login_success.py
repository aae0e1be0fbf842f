"""The instant a beat first ran against this database (issue 31: no false alarm at the first
start); the addresses each account logged in from (issue 41: the login throttle lets a
correct password from a known address through).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 13:00:00

- ``scheduler_epoch``: one row, written by the first beat tick ever (``INSERT ... ON CONFLICT
  DO NOTHING``: of two beats starting at once, the first to commit sets it). The ledger never
  plans or judges a firing planned before it (monitor/ledger.py).
- ``login_success``: (account, client address) pairs of successful logins, with the last one's
  time (web/security.py).
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
    op.create_table(
        "login_success",
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("client", sa.Text(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("account", "client", name=op.f("pk_login_success")),
    )


def downgrade() -> None:
    op.drop_table("login_success")
    op.drop_table("scheduler_epoch")
