"""What maintenance purged, and refused re-aggregation requests (SPEC D5).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 12:50:00

- ``purge_mark``: for facts and for the aggregates below DAY, the instant before which
  maintenance has removed rows. Retention options can be raised after a purge; the mark keeps
  the truth ("the oldest day still held") when the option alone would claim more.
- ``agg_request.refused``: why the aggregation job refused a queued request when it came to
  process it (the data it would be rebuilt from was purged meanwhile); nothing was deleted.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "purge_mark",
        sa.Column("what", sa.Text(), nullable=False),
        sa.Column("purged_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("what IN ('facts', 'aggregates')", name=op.f("ck_purge_mark_what")),
        sa.PrimaryKeyConstraint("what", name=op.f("pk_purge_mark")),
    )
    op.add_column("agg_request", sa.Column("refused", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("agg_request", "refused")
    op.drop_table("purge_mark")
