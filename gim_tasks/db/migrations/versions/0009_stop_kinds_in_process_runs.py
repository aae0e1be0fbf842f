"""Stop kinds (SPEC R4) and in-process runs (M0).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 10:10:00

- ``job_run.stop_kind``: why a Stopped run stopped. Recorded with the stop request (or by the
  process that stops itself); the constraint ``ck_job_run_stopped_has_kind`` makes every
  Stopped run carry one, whichever path ends it. Existing Stopped runs get the kind their
  recorded reason names.
- ``job_run.in_process``: the run executes in the process that asked for it (``gim run
  --local``, ``gim aggregate once``), not on a worker: the beat never sends it a message and
  never resends it; the R2 sweep cancels such a Scheduled run whose waiting process is gone.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

KINDS = ("window-end", "maintenance", "preempted", "operator", "shutdown", "terminated")


def upgrade() -> None:
    op.add_column("job_run", sa.Column("stop_kind", sa.Text(), nullable=True))
    op.add_column(
        "job_run",
        sa.Column("in_process", sa.Boolean(), nullable=False, server_default=sa.text("false")),
    )
    op.execute(
        "UPDATE job_run SET stop_kind = CASE "
        "WHEN reason LIKE 'aggregation window ended%' THEN 'window-end' "
        "WHEN reason LIKE 'paused for maintenance%' THEN 'maintenance' "
        "WHEN reason LIKE 'preempted%' THEN 'preempted' "
        "WHEN reason LIKE 'worker shutting down%' THEN 'shutdown' "
        "WHEN reason LIKE 'stopped by %' THEN 'operator' "
        "ELSE 'terminated' END WHERE state = 'Stopped'"
    )
    op.create_check_constraint(
        op.f("ck_job_run_stop_kind"),
        "job_run",
        "stop_kind IN (" + ", ".join(f"'{k}'" for k in KINDS) + ")",
    )
    op.create_check_constraint(
        op.f("ck_job_run_stopped_has_kind"),
        "job_run",
        "state <> 'Stopped' OR stop_kind IS NOT NULL",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_job_run_stopped_has_kind"), "job_run", type_="check")
    op.drop_constraint(op.f("ck_job_run_stop_kind"), "job_run", type_="check")
    op.drop_column("job_run", "in_process")
    op.drop_column("job_run", "stop_kind")
