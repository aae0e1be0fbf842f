"""Custom calendars: DATE_TIME attributes in extra time zones (date_time_extra).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 22:09:52.875597
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "date_time_extra",
        sa.Column("calendar", sa.Text(), nullable=False),
        sa.Column("date_time_key", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("local_time", sa.Time(), nullable=False),
        sa.Column("local_hour", sa.SmallInteger(), nullable=False),
        sa.Column("day_of_week", sa.SmallInteger(), nullable=False),
        sa.Column("month", sa.SmallInteger(), nullable=False),
        sa.Column("quarter", sa.SmallInteger(), nullable=False),
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("calendar", "date_time_key", name=op.f("pk_date_time_extra")),
    )


def downgrade() -> None:
    op.drop_table("date_time_extra")
