"""Time limits, slow runs, collisions ahead, retries (issue 36, SPEC L1-L3).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 19:45:00

- stop kind ``time-limit`` (L1); incident conditions ``time-limit``, ``slow``,
  ``collision-ahead`` (L1, L2).
- ``job_run.attempt``, ``max_attempts``, ``retry`` (pending, retried, final), ``retry_of``
  (L3); ``firing.attempts``.
- The run-letter trigger says only the final outcome (L3): a failed attempt whose retry is
  pending or made queues no letter; when the beat decides no retry will come (``pending`` ->
  ``final``) the letters of that attempt are queued then. The acknowledged-failure mute of
  0019 stays.
- The web role's admissions insert first attempts only.
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

STOP_KINDS_BEFORE = "'window-end', 'maintenance', 'preempted', 'operator', 'shutdown', 'terminated'"
STOP_KINDS_AFTER = STOP_KINDS_BEFORE + ", 'time-limit'"
CONDITIONS_BEFORE = (
    "'blocked', 'failure', 'missed', 'late', 'stale-data', 'scheduler-down', 'paused'"
)
CONDITIONS_AFTER = CONDITIONS_BEFORE + ", 'time-limit', 'slow', 'collision-ahead'"

LETTERS = """
CREATE OR REPLACE FUNCTION gim_queue_notifications() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- L3: a failed attempt that is retried, or may be, is not the outcome: no letter yet.
    IF NEW.retry IN ('pending', 'retried') THEN
        RETURN NULL;
    END IF;
    -- The state changed (a run ended), or the beat decided no retry comes (pending -> final).
    IF OLD.state IS NOT DISTINCT FROM NEW.state
       AND NOT (OLD.retry = 'pending' AND NEW.retry = 'final') THEN
        RETURN NULL;
    END IF;
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
DROP TRIGGER job_run_notify ON job_run;
CREATE TRIGGER job_run_notify AFTER UPDATE OF state, retry ON job_run
    FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.retry IS DISTINCT FROM NEW.retry)
    EXECUTE FUNCTION gim_queue_notifications();
"""

LETTERS_0019 = """
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

TRIGGER_0008 = """
DROP TRIGGER job_run_notify ON job_run;
CREATE TRIGGER job_run_notify AFTER UPDATE OF state ON job_run
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION gim_queue_notifications();
"""

ADMIT_0018 = """
CREATE POLICY job_run_admit ON job_run FOR INSERT WITH CHECK (
    state IN ('Scheduled', 'Rejected') AND trigger IN ('manual', 'forced')
    AND started_at IS NULL AND fencing_token IS NULL AND firing_id IS NULL
    AND NOT in_process
    AND rows_read = 0 AND rows_written = 0 AND rows_discarded = 0 AND warnings = 0
    AND error IS NULL AND summary = '{}'::jsonb AND ended_by IS NULL
    AND stop_kind IS NULL AND stop_requested_at IS NULL AND skip IS NULL
)
"""

ADMIT = ADMIT_0018.replace(
    "AND skip IS NULL\n)",
    "AND skip IS NULL\n    AND attempt = 1 AND retry IS NULL AND retry_of IS NULL\n)",
)


def _check(table: str, column: str, values: str) -> None:
    op.drop_constraint(op.f(f"ck_{table}_{column}"), table, type_="check")
    op.create_check_constraint(op.f(f"ck_{table}_{column}"), table, f"{column} IN ({values})")


def upgrade() -> None:
    _check("job_run", "stop_kind", STOP_KINDS_AFTER)
    _check("incident", "condition", CONDITIONS_AFTER)
    op.add_column("job_run", sa.Column("attempt", sa.Integer(), server_default="1", nullable=False))
    op.add_column(
        "job_run", sa.Column("max_attempts", sa.Integer(), server_default="1", nullable=False)
    )
    op.add_column("job_run", sa.Column("retry", sa.Text(), nullable=True))
    op.add_column("job_run", sa.Column("retry_of", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_job_run_retry_of_job_run"),
        "job_run",
        "job_run",
        ["retry_of"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_check_constraint(
        op.f("ck_job_run_retry"), "job_run", "retry IN ('pending', 'retried', 'final')"
    )
    op.create_check_constraint(
        op.f("ck_job_run_attempts"), "job_run", "attempt >= 1 AND max_attempts >= 1"
    )
    op.create_index(
        "ix_job_run_retry_pending",
        "job_run",
        ["ended_at"],
        postgresql_where=sa.text("retry = 'pending'"),
    )
    op.add_column("firing", sa.Column("attempts", sa.Integer(), server_default="1", nullable=False))
    op.execute(LETTERS)
    op.execute("DROP POLICY job_run_admit ON job_run")
    op.execute(ADMIT)


def downgrade() -> None:
    op.execute("DROP POLICY job_run_admit ON job_run")
    op.execute(ADMIT_0018)
    op.execute(LETTERS_0019)
    op.execute(TRIGGER_0008)
    op.drop_column("firing", "attempts")
    op.drop_index("ix_job_run_retry_pending", table_name="job_run")
    op.drop_constraint(op.f("ck_job_run_attempts"), "job_run", type_="check")
    op.drop_constraint(op.f("ck_job_run_retry"), "job_run", type_="check")
    op.drop_constraint(op.f("fk_job_run_retry_of_job_run"), "job_run", type_="foreignkey")
    for column in ("retry_of", "retry", "max_attempts", "attempt"):
        op.drop_column("job_run", column)
    _check("incident", "condition", CONDITIONS_BEFORE)
    _check("job_run", "stop_kind", STOP_KINDS_BEFORE)
