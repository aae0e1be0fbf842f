"""Server-side web sessions, login throttling, token expiry; what the web role may write
(SPEC A5; issue "Security hardening").

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 10:40:00

- ``web_session``: a browser session is a row (only the SHA-256 of its random id is kept), so
  logout, a password or role change and user removal end sessions at once, and a signed cookie
  alone (even one signed with a leaked key) is no session.
- ``login_failure``: failed logins per account and client address, for throttling.
- ``api_token.expires_at``: optional token expiry.
- Row-level security on ``job_run`` for roles other than its owner (the web role): they read
  every run, insert only admissions (Scheduled or Rejected, manual or forced, never started),
  and update only Scheduled and Running runs, which stay Scheduled or Running or become
  Cancelled while never started: an ended run cannot be rewritten, a run cannot be marked
  Completed or Failed. The owner (beat, workers, CLI) is not subject to these policies.
- ``gim_write_option``: the one way the web role changes an option (SECURITY DEFINER): the value
  and its change-log row are written together by the function, so the log cannot be forged.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

WRITE_OPTION = """
CREATE FUNCTION gim_write_option(
    p_section text, p_name text, p_value text, p_actor text, p_default text
) RETURNS TABLE (old_value text, new_value text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    previous text;
BEGIN
    SELECT v.value INTO previous FROM option_value v
        WHERE v.section = p_section AND v.name = p_name FOR UPDATE;
    old_value := coalesce(previous, p_default);
    IF p_value IS NULL THEN
        DELETE FROM option_value v WHERE v.section = p_section AND v.name = p_name;
        new_value := p_default;
    ELSE
        INSERT INTO option_value (section, name, value, changed_by, changed_at)
            VALUES (p_section, p_name, p_value, p_actor, now())
            ON CONFLICT (section, name) DO UPDATE
            SET value = EXCLUDED.value, changed_by = EXCLUDED.changed_by, changed_at = now();
        new_value := p_value;
    END IF;
    INSERT INTO option_change (section, name, old_value, new_value, changed_by)
        VALUES (p_section, p_name, old_value, new_value, p_actor);
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION gim_write_option(text, text, text, text, text) FROM PUBLIC;
"""

POLICIES = """
ALTER TABLE job_run ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_run_read ON job_run FOR SELECT USING (true);
CREATE POLICY job_run_admit ON job_run FOR INSERT WITH CHECK (
    state IN ('Scheduled', 'Rejected') AND trigger IN ('manual', 'forced')
    AND started_at IS NULL AND fencing_token IS NULL AND firing_id IS NULL
    AND NOT in_process
);
CREATE POLICY job_run_manage ON job_run FOR UPDATE
    USING (state IN ('Scheduled', 'Running'))
    WITH CHECK (
        (state = 'Running' AND started_at IS NOT NULL)
        OR (state IN ('Scheduled', 'Cancelled') AND started_at IS NULL)
    );
"""


def upgrade() -> None:
    op.create_table(
        "web_session",
        sa.Column("id_sha256", sa.Text(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("client", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "last_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["web_user.id"],
            name=op.f("fk_web_session_user_id_web_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id_sha256", name=op.f("pk_web_session")),
    )
    op.create_index(op.f("ix_web_session_user_id"), "web_session", ["user_id"])
    op.create_table(
        "login_failure",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("client", sa.Text(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failure")),
    )
    op.create_index("ix_login_failure_account_at", "login_failure", ["account", "at"])
    op.create_index("ix_login_failure_client_at", "login_failure", ["client", "at"])
    op.add_column("api_token", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(WRITE_OPTION)
    op.execute(POLICIES)


def downgrade() -> None:
    op.execute("DROP POLICY job_run_manage ON job_run")
    op.execute("DROP POLICY job_run_admit ON job_run")
    op.execute("DROP POLICY job_run_read ON job_run")
    op.execute("ALTER TABLE job_run DISABLE ROW LEVEL SECURITY")
    op.execute("DROP FUNCTION gim_write_option(text, text, text, text, text)")
    op.drop_column("api_token", "expires_at")
    op.drop_index("ix_login_failure_client_at", table_name="login_failure")
    op.drop_index("ix_login_failure_account_at", table_name="login_failure")
    op.drop_table("login_failure")
    op.drop_index(op.f("ix_web_session_user_id"), table_name="web_session")
    op.drop_table("web_session")
