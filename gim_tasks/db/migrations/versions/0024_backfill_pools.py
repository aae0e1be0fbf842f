"""Back-fills and pools (issue 35, SPEC B1, B2): ``backfill`` and its items, ``pool_slot``
with the trigger that ties a slot to its run, and the one-Running-run rule (S2) made per day
and step for back-fill items (their job runs up to max-parallel items at once).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05 01:30:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

# B2: a slot follows its run. Claimed (Running): the run's fencing token is written on it;
# ended by any path (finish_run, the R2 sweep, a cancel, a terminate): the row goes, in the
# same transaction as the run's end. SECURITY DEFINER: the web role ends runs (a cancel)
# without any right on the slots' other rows.
FOLLOW = """
CREATE FUNCTION gim_pool_slot_follow() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF NEW.state = 'Running' THEN
        UPDATE pool_slot SET fencing_token = NEW.fencing_token WHERE run_id = NEW.id;
    ELSIF NEW.state NOT IN ('Scheduled', 'Running') THEN
        DELETE FROM pool_slot WHERE run_id = NEW.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER pool_slot_follow AFTER UPDATE OF state, fencing_token ON job_run
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state
                       OR OLD.fencing_token IS DISTINCT FROM NEW.fencing_token)
    EXECUTE FUNCTION gim_pool_slot_follow();
"""


def upgrade() -> None:
    op.drop_index("uq_job_run_one_running", table_name="job_run")
    op.create_index(
        "uq_job_run_one_running",
        "job_run",
        ["job"],
        unique=True,
        postgresql_where=sa.text("state = 'Running' AND trigger <> 'backfill'"),
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_job_run_backfill_item_running ON job_run "
        "((params->>'step'), (params->>'day')) WHERE state = 'Running' AND trigger = 'backfill'"
    )
    op.create_table(
        "backfill",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("from_day", sa.Date(), nullable=False),
        sa.Column("to_day", sa.Date(), nullable=False),
        sa.Column("steps", ARRAY(sa.Text()), nullable=False),
        sa.Column("reprocess", sa.Text(), nullable=False),
        sa.Column("item_order", sa.Text(), nullable=False),
        sa.Column("max_parallel", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False, server_default=sa.text("'active'")),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("waiting", sa.Text()),
        sa.CheckConstraint(
            "state IN ('active', 'paused', 'cancelled', 'done')", name=op.f("ck_backfill_state")
        ),
        sa.CheckConstraint(
            "reprocess IN ('missing', 'failed', 'all')", name=op.f("ck_backfill_reprocess")
        ),
        sa.CheckConstraint(
            "item_order IN ('oldest', 'newest')", name=op.f("ck_backfill_item_order")
        ),
        sa.CheckConstraint("max_parallel BETWEEN 1 AND 16", name=op.f("ck_backfill_max_parallel")),
        sa.CheckConstraint("from_day <= to_day", name=op.f("ck_backfill_range")),
        sa.CheckConstraint("length(btrim(reason)) > 0", name=op.f("ck_backfill_reason")),
    )
    op.create_index(
        "ix_backfill_live",
        "backfill",
        ["id"],
        postgresql_where=sa.text("state IN ('active', 'paused')"),
    )
    op.create_table(
        "backfill_item",
        sa.Column(
            "backfill_id",
            sa.BigInteger(),
            sa.ForeignKey("backfill.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("step", sa.Text(), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), sa.ForeignKey("job_run.id", ondelete="SET NULL")),
        sa.CheckConstraint("step IN ('aggregate', 'export')", name=op.f("ck_backfill_item_step")),
    )
    op.create_index("ix_backfill_item_order", "backfill_item", ["backfill_id", "position"])
    op.create_table(
        "pool_slot",
        sa.Column(
            "run_id",
            sa.BigInteger(),
            sa.ForeignKey("job_run.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("pool", sa.Text(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("fencing_token", sa.BigInteger()),
        sa.Column(
            "taken_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
        ),
        sa.CheckConstraint("weight >= 1", name=op.f("ck_pool_slot_weight")),
    )
    op.execute(FOLLOW)


def downgrade() -> None:
    op.execute("DROP TRIGGER pool_slot_follow ON job_run")
    op.execute("DROP FUNCTION gim_pool_slot_follow()")
    op.drop_table("pool_slot")
    op.drop_table("backfill_item")
    op.drop_table("backfill")
    op.execute("DROP INDEX uq_job_run_backfill_item_running")
    op.drop_index("uq_job_run_one_running", table_name="job_run")
    op.create_index(
        "uq_job_run_one_running",
        "job_run",
        ["job"],
        unique=True,
        postgresql_where=sa.text("state = 'Running'"),
    )
