"""History's order as indexes (issue 40, web under load): runs are listed by their start, or
creation while they have not started, newest first (``coalesce(started_at, created_at) DESC,
id DESC``), filtered by job or not. Without an index each History page and ``/api/runs``
sorted every matching run (25,000 of 65,000 in the load bench) to show 50; a backward index
scan reads the first 50. And ``ended_at``: the summary strip of every page counts the runs
ended in the last days. And ``(job, planned_at)``: the beat's every tick reads the newest
scheduled ETL cycle (S1, S3), which sorted all of Extract's runs (10 ms of a 29 ms tick at
65,000 runs).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04 22:40:00
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_job_run_began ON job_run (coalesce(started_at, created_at), id)")
    op.execute(
        "CREATE INDEX ix_job_run_job_began ON job_run (job, coalesce(started_at, created_at), id)"
    )

    op.execute("CREATE INDEX ix_job_run_ended ON job_run (ended_at)")
    op.execute("CREATE INDEX ix_job_run_job_planned ON job_run (job, planned_at)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_job_run_job_planned")
    op.execute("DROP INDEX ix_job_run_ended")
    op.execute("DROP INDEX ix_job_run_job_began")
    op.execute("DROP INDEX ix_job_run_began")
