"""One audit trail, notes, acknowledged incidents (issue 38, SPEC P6, P7).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 19:20:00

- ``audit_event``: append-only. Grants cannot bind the owner (the beat, the workers and the
  CLI connect as the schema's owner), so a trigger refuses UPDATE and DELETE row by row and
  TRUNCATE per statement, whoever asks; the web role is granted INSERT and SELECT only.
- ``note``: notes on runs, firings and incidents (P7).
- ``incident.acknowledged_at`` / ``acknowledged_by`` (P7). The run-letter trigger no longer
  queues an error letter for a run of a job whose open ``failure`` incident is acknowledged:
  those letters are the incident's repeat notices (its occurrence count still rises).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

APPEND_ONLY = """
CREATE FUNCTION gim_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_event is append-only: % is refused (SPEC P6)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION gim_audit_append_only();
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION gim_audit_append_only();
"""

#: 0012's function, with the acknowledged-failure mute (P7).
LETTERS = """
CREATE OR REPLACE FUNCTION gim_queue_notifications() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IN ('Completed', 'Completed with warnings', 'Failed', 'Stopped') THEN
        INSERT INTO notification (run_id, recipient)
        SELECT NEW.id, s.recipient
        FROM notification_subscription AS s
        WHERE s.job = NEW.job
          AND ((s.on_success AND NEW.state IN ('Completed', 'Completed with warnings'))
               OR (s.on_error AND (NEW.state = 'Failed'
                   OR (NEW.state = 'Stopped' AND NEW.stop_kind IS DISTINCT FROM 'window-end'
                       AND NEW.stop_kind IS DISTINCT FROM 'maintenance'
                       AND NEW.stop_kind IS DISTINCT FROM 'preempted'))
                   AND NOT EXISTS (
                       SELECT 1 FROM incident AS i
                       WHERE i.job = NEW.job AND i.condition = 'failure'
                         AND i.resolved_at IS NULL AND i.acknowledged_at IS NOT NULL)))
        ON CONFLICT ON CONSTRAINT uq_notification_run_recipient DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
"""

LETTERS_0012 = """
CREATE OR REPLACE FUNCTION gim_queue_notifications() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IN ('Completed', 'Completed with warnings', 'Failed', 'Stopped') THEN
        INSERT INTO notification (run_id, recipient)
        SELECT NEW.id, s.recipient
        FROM notification_subscription AS s
        WHERE s.job = NEW.job
          AND ((s.on_success AND NEW.state IN ('Completed', 'Completed with warnings'))
               OR (s.on_error AND (NEW.state = 'Failed'
                   OR (NEW.state = 'Stopped' AND NEW.stop_kind IS DISTINCT FROM 'window-end'
                       AND NEW.stop_kind IS DISTINCT FROM 'maintenance'
                       AND NEW.stop_kind IS DISTINCT FROM 'preempted'))))
        ON CONFLICT ON CONSTRAINT uq_notification_run_recipient DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
"""


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("before", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("after", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("client", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "channel IN ('web', 'api', 'cli', 'celery', 'beat')",
            name=op.f("ck_audit_event_channel"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    op.create_index("ix_audit_event_at", "audit_event", ["at"])
    op.create_index("ix_audit_event_actor_at", "audit_event", ["actor", "at"])
    op.create_index("ix_audit_event_target_at", "audit_event", ["target", "at"])
    op.execute(APPEND_ONLY)
    op.create_table(
        "note",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint("kind IN ('run', 'firing', 'incident')", name=op.f("ck_note_kind")),
        sa.CheckConstraint("length(btrim(text)) > 0", name=op.f("ck_note_text")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_note")),
    )
    op.create_index("ix_note_kind_target", "note", ["kind", "target"])
    op.add_column("incident", sa.Column("acknowledged_at", sa.DateTime(timezone=True)))
    op.add_column("incident", sa.Column("acknowledged_by", sa.Text()))
    op.execute(LETTERS)


def downgrade() -> None:
    op.execute(LETTERS_0012)
    op.drop_column("incident", "acknowledged_by")
    op.drop_column("incident", "acknowledged_at")
    op.drop_table("note")
    op.drop_table("audit_event")
    op.execute("DROP FUNCTION gim_audit_append_only()")
