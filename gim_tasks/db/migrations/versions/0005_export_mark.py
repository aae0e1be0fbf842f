"""Export progress: the exported-through point of Job_ExportGIM (SPEC D4).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 22:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_mark",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("exported_through", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_chunk", sa.Text(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_mark")),
    )


def downgrade() -> None:
    op.drop_table("export_mark")
