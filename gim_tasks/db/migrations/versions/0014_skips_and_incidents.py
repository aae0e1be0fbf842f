"""Skipped firings by kind, C2 blocks as incidents mailed once (SPEC R4, A3; issue 18 item 1).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 19:20:00

- ``job_run.skip``: why the scheduler recorded a firing without starting it: ``rule`` (S1, S2,
  S6, S9, S12 require it: not shown in History nor counted) or ``blocked`` (the configuration
  check blocks every start, C2: a failure). Existing scheduler skips are classified by their
  reason (a C2 refusal starts with "configuration check failed").
- ``incident``: a block opened by the first blocked firing of a job and resolved when the check
  passes again; one open incident per job and condition (partial unique index).
- ``notification.kind``: ``end`` (a run's end, as before), ``blocked``, ``unblocked`` (the
  incident's two mails); the unique key includes it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("job_run", sa.Column("skip", sa.Text(), nullable=True))
    op.execute(
        "UPDATE job_run SET skip = CASE WHEN reason LIKE 'configuration check failed%' "
        "THEN 'blocked' ELSE 'rule' END "
        "WHERE state = 'Rejected' AND actor = 'scheduler' AND firing_id IS NOT NULL"
    )
    op.create_check_constraint(op.f("ck_job_run_skip"), "job_run", "skip IN ('rule', 'blocked')")
    op.create_check_constraint(
        op.f("ck_job_run_skip_is_rejected"), "job_run", "skip IS NULL OR state = 'Rejected'"
    )
    op.create_table(
        "incident",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("job", sa.Text(), nullable=False),
        sa.Column("condition", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column(
            "run_id",
            sa.BigInteger(),
            sa.ForeignKey(
                "job_run.id", ondelete="CASCADE", name=op.f("fk_incident_run_id_job_run")
            ),
            nullable=False,
        ),
        sa.Column(
            "opened_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
        ),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("firings", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.CheckConstraint("condition IN ('blocked')", name=op.f("ck_incident_condition")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident")),
    )
    op.create_index(
        "uq_incident_open",
        "incident",
        ["job", "condition"],
        unique=True,
        postgresql_where=sa.text("resolved_at IS NULL"),
    )
    op.add_column(
        "notification",
        sa.Column("kind", sa.Text(), nullable=False, server_default=sa.text("'end'")),
    )
    op.create_check_constraint(
        op.f("ck_notification_kind"), "notification", "kind IN ('end', 'blocked', 'unblocked')"
    )
    op.drop_constraint("uq_notification_run_recipient", "notification", type_="unique")
    op.create_unique_constraint(
        "uq_notification_run_recipient", "notification", ["run_id", "recipient", "kind"]
    )


def downgrade() -> None:
    op.execute("DELETE FROM notification WHERE kind <> 'end'")
    op.drop_constraint("uq_notification_run_recipient", "notification", type_="unique")
    op.create_unique_constraint(
        "uq_notification_run_recipient", "notification", ["run_id", "recipient"]
    )
    op.drop_constraint(op.f("ck_notification_kind"), "notification", type_="check")
    op.drop_column("notification", "kind")
    op.drop_index("uq_incident_open", table_name="incident")
    op.drop_table("incident")
    op.drop_constraint(op.f("ck_job_run_skip_is_rejected"), "job_run", type_="check")
    op.drop_constraint(op.f("ck_job_run_skip"), "job_run", type_="check")
    op.drop_column("job_run", "skip")
