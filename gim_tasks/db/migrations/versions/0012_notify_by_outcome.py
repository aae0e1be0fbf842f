"""Notifications by outcome (SPEC R4, A3).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 17:05:00

``gim_queue_notifications`` (the ``job_run_notify`` trigger's function) mailed error
subscribers for every Stopped run, so each aggregation window's end, each pause for maintenance
and each S5 preemption sent an error mail. Now: success subscribers get Completed and
Completed with warnings; error subscribers get Failed and every stop except the planned ones
(``window-end``, ``maintenance``, ``preempted``: successes by R4, mailed to nobody). An
operator's stop goes to error subscribers (Alma: the job "does not complete successfully").
The run's ``stop_kind`` is written in the same UPDATE as its state, so the trigger sees it.
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

FUNCTION = """
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

PREVIOUS = """
CREATE OR REPLACE FUNCTION gim_queue_notifications() RETURNS trigger LANGUAGE plpgsql AS $$
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
"""


def upgrade() -> None:
    op.execute(FUNCTION)


def downgrade() -> None:
    op.execute(PREVIOUS)
