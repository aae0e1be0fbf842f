"""The web role inserts only what an admission or a planned run writes (issue 41): a manual
run's row carries no counts, error, summary, stop or skip; a firing it inserts is a planned run's
(stream ``at``, undecided, no run). The owner (the beat, the CLI) is not bound by these
policies; the web role is (row-level security applies to roles that do not own the table).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 17:15:00
"""

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


def upgrade() -> None:
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
