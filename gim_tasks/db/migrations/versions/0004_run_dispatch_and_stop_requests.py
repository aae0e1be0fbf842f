"""Run dispatch and stop requests; the fencing token sequence (SPEC M6, R2, S11).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 22:19:16.399198
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A run's fencing token: taken when it starts, checked by every transaction it commits.
    op.execute("CREATE SEQUENCE fencing_seq")
    op.add_column("job_run", sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "job_run", sa.Column("stop_requested_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("job_run", "stop_requested_at")
    op.drop_column("job_run", "dispatched_at")
    op.execute("DROP SEQUENCE fencing_seq")
