"""Web users, API tokens, notification subscriptions and the notification outbox (SPEC A3, A5).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 00:37:29

The trigger ``job_run_notify`` queues the mails of a run in the same transaction that ends it
(A3: success = Completed / Completed with warnings, error = Failed / Stopped), whichever process
ends the run; ``uq_notification_run_recipient`` keeps it to one mail per recipient and run.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TRIGGER = """
CREATE FUNCTION gim_queue_notifications() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IN ('Completed', 'Completed with warnings', 'Failed', 'Stopped') THEN
        INSERT INTO notification (run_id, recipient)
        SELECT NEW.id, s.recipient
        FROM notification_subscription AS s
        WHERE s.job = NEW.job
          AND ((s.on_success AND NEW.state IN ('Completed', 'Completed with warnings'))
               OR (s.on_error AND NEW.state IN ('Failed', 'Stopped')))
        ON CONFLICT ON CONSTRAINT uq_notification_run_recipient DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER job_run_notify AFTER UPDATE OF state ON job_run
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION gim_queue_notifications();
"""


def upgrade() -> None:
    op.create_table(
        "notification_subscription",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("job", sa.Text(), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("on_success", sa.Boolean(), nullable=False),
        sa.Column("on_error", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "on_success OR on_error", name=op.f("ck_notification_subscription_some_event")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_subscription")),
        sa.UniqueConstraint("job", "recipient", name="uq_notification_subscription_job_recipient"),
    )
    op.create_table(
        "web_user",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "role IN ('viewer', 'operator', 'admin')", name=op.f("ck_web_user_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_user")),
        sa.UniqueConstraint("name", name=op.f("uq_web_user_name")),
    )
    op.create_table(
        "api_token",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("token_sha256", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["web_user.id"],
            name=op.f("fk_api_token_user_id_web_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_api_token_token_sha256")),
    )
    op.create_table(
        "notification",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'sent', 'failed')", name=op.f("ck_notification_state")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["job_run.id"],
            name=op.f("fk_notification_run_id_job_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
        sa.UniqueConstraint("run_id", "recipient", name="uq_notification_run_recipient"),
    )
    op.create_index(
        "ix_notification_pending",
        "notification",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.execute(TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER job_run_notify ON job_run")
    op.execute("DROP FUNCTION gim_queue_notifications()")
    op.drop_index("ix_notification_pending", table_name="notification")
    op.drop_table("notification")
    op.drop_table("api_token")
    op.drop_table("web_user")
    op.drop_table("notification_subscription")
