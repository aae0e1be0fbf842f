"""Extract fan-out (issue 39, SPEC H2): ``extract_part``, one row per IDB of an Extract run,
claimed by any worker with a fencing token of its own, and the trigger that ends the parts of
a run that ended (by any path: finish, the R2 sweep, a terminate).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05 04:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

# H2: the parts of a run that ended and were still waiting or running are "abandoned" in the
# transaction that ended it: no part of an ended run can be claimed or commit (its fence reads
# the part's state), whichever path ended the run. SECURITY DEFINER: the web role ends runs (a
# cancel) without any right on the parts.
FOLLOW = """
CREATE FUNCTION gim_extract_part_follow() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    UPDATE extract_part SET state = 'abandoned', ended_at = now()
     WHERE run_id = NEW.id AND state IN ('scheduled', 'running');
    RETURN NULL;
END $$;
CREATE TRIGGER extract_part_follow AFTER UPDATE OF state ON job_run
    FOR EACH ROW WHEN (OLD.state = 'Running' AND NEW.state <> 'Running')
    EXECUTE FUNCTION gim_extract_part_follow();
"""


def upgrade() -> None:
    op.create_table(
        "extract_part",
        sa.Column(
            "run_id",
            sa.BigInteger(),
            sa.ForeignKey("job_run.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("idb", sa.Text(), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False, server_default=sa.text("'scheduled'")),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("lost", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("fencing_token", sa.BigInteger()),
        sa.Column("worker", sa.Text()),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("rows_read", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("rows_written", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("error", sa.Text()),
        # L3: the part failed with an error a retry may cure (errors.is_transient)
        sa.Column("transient", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.CheckConstraint(
            "state IN ('scheduled', 'running', 'completed', 'failed', 'stopped', 'abandoned')",
            name=op.f("ck_extract_part_state"),
        ),
    )
    op.execute(FOLLOW)


def downgrade() -> None:
    op.execute("DROP TRIGGER extract_part_follow ON job_run")
    op.execute("DROP FUNCTION gim_extract_part_follow()")
    op.drop_table("extract_part")
