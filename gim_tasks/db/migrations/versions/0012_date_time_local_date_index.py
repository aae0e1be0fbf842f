"""An index on DATE_TIME's local day.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 16:10:00

Aggregate verification (``gim aggregate verify``, the reliability suite) and the D5 holdings
select DATE_TIME rows by local day; without the index each of those reads scans the whole
calendar (every 15-minute interval of the days kept and filled ahead).
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_date_time_local_date", "date_time", ["local_date"])


def downgrade() -> None:
    op.drop_index("ix_date_time_local_date", table_name="date_time")
