"""The web role inserts only what an admission or a planned run writes (issue 41): a manual
run's row carries no counts, error, summary, stop or skip; a firing it inserts is a planned run's
(stream ``at``, undecided, no run). The owner (the beat, the CLI) is not bound by these
policies; the web role is (row-level security applies to roles that do not own the table).
And ``gim_write_option`` writes only an option the registry declares: ``option_key`` lists
them (``gim db upgrade`` keeps it equal to the registry, site jobs' options included).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 17:15:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

ADMIT_0010 = """
CREATE POLICY job_run_admit ON job_run FOR INSERT WITH CHECK (
    state IN ('Scheduled', 'Rejected') AND trigger IN ('manual', 'forced')
    AND started_at IS NULL AND fencing_token IS NULL AND firing_id IS NULL
    AND NOT in_process
)
"""

ADMIT = """
CREATE POLICY job_run_admit ON job_run FOR INSERT WITH CHECK (
    state IN ('Scheduled', 'Rejected') AND trigger IN ('manual', 'forced')
    AND started_at IS NULL AND fencing_token IS NULL AND firing_id IS NULL
    AND NOT in_process
    AND rows_read = 0 AND rows_written = 0 AND rows_discarded = 0 AND warnings = 0
    AND error IS NULL AND summary = '{}'::jsonb AND ended_by IS NULL
    AND stop_kind IS NULL AND stop_requested_at IS NULL AND skip IS NULL
)
"""

FIRING = """
ALTER TABLE firing ENABLE ROW LEVEL SECURITY;
CREATE POLICY firing_read ON firing FOR SELECT USING (true);
CREATE POLICY firing_plan_at ON firing FOR INSERT WITH CHECK (
    stream = 'at' AND firing_id LIKE 'at:%' AND verdict IS NULL AND decided_at IS NULL
    AND run_id IS NULL
);
CREATE POLICY firing_judge ON firing FOR UPDATE USING (true) WITH CHECK (true);
"""


WRITE_OPTION = """
CREATE OR REPLACE FUNCTION gim_write_option(
    p_section text, p_name text, p_value text, p_actor text, p_default text
) RETURNS TABLE (old_value text, new_value text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    previous text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM option_key k WHERE k.section = p_section AND k.name = p_name)
    THEN
        RAISE EXCEPTION 'unknown option [%] %', p_section, p_name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'gim db upgrade lists the options of this version in option_key';
    END IF;
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
"""


def upgrade() -> None:
    op.create_table(
        "option_key",
        sa.Column("section", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("section", "name", name=op.f("pk_option_key")),
    )
    # The options stored so far are the registry's (their writes were checked in Python);
    # gim db upgrade replaces the list with the registry's own after migrating.
    op.execute("INSERT INTO option_key SELECT DISTINCT section, name FROM option_value")
    op.execute(WRITE_OPTION)
    op.execute("DROP POLICY job_run_admit ON job_run")
    op.execute(ADMIT)
    op.execute(FIRING)


def downgrade() -> None:
    op.execute("DROP POLICY firing_judge ON firing")
    op.execute("DROP POLICY firing_plan_at ON firing")
    op.execute("DROP POLICY firing_read ON firing")
    op.execute("ALTER TABLE firing DISABLE ROW LEVEL SECURITY")
    op.execute("DROP POLICY job_run_admit ON job_run")
    op.execute(ADMIT_0010)
    op.execute(
        WRITE_OPTION.replace(
            """    IF NOT EXISTS (SELECT 1 FROM option_key k WHERE k.section = p_section AND k.name = p_name)
    THEN
        RAISE EXCEPTION 'unknown option [%] %', p_section, p_name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'gim db upgrade lists the options of this version in option_key';
    END IF;
""",
            "",
        )
    )
    op.drop_table("option_key")
