"""Blocks of the configuration check as incidents, mailed once when they start and once when
they clear (SPEC R4, A3; issue 18 item 1).

Every scheduled firing the check blocks (C2) is recorded as a Rejected run with skip
``blocked``: a failure in History and the summary. Mailing each one would flood the error
subscribers (an ETL cycle every few minutes), so the first blocked firing of a job opens an
incident and queues one ``blocked`` mail; later blocked firings only count; the first tick at
which the check no longer blocks the job resolves it and queues one ``unblocked`` mail.

Both functions run in the beat's tick transaction, under the admission lock (beat.carry_out):
the firing, the incident and the mail rows commit together or not at all. The partial unique
index ``uq_incident_open`` (one open incident per job and condition) is the backstop: a second
beat's insert is a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from gim_tasks.db.tables import incident, notification, notification_subscription

BLOCKED = "blocked"


def _queue_mails(conn: Connection, job: str, run_id: int, kind: str) -> bool:
    """One mail row of ``kind`` per error subscriber of ``job``; True if any was queued."""
    subscribers = sa.select(
        sa.literal(run_id), notification_subscription.c.recipient, sa.literal(kind)
    ).where(notification_subscription.c.job == job, notification_subscription.c.on_error)
    queued = conn.execute(
        insert(notification)
        .from_select(["run_id", "recipient", "kind"], subscribers)
        .on_conflict_do_nothing(constraint="uq_notification_run_recipient")
        .returning(notification.c.id)
    ).all()
    return bool(queued)


def blocked_firing(conn: Connection, job: str, run_id: int, reason: str) -> list[int]:
    """A firing of ``job`` recorded as run ``run_id`` was blocked: open the job's incident
    (and queue its mail) or count the firing in the open one. Returns the runs to mail."""
    opened = conn.execute(
        insert(incident)
        .values(job=job, condition=BLOCKED, detail=reason, run_id=run_id)
        .on_conflict_do_nothing(
            index_elements=["job", "condition"], index_where=sa.text("resolved_at IS NULL")
        )
        .returning(incident.c.id)
    ).scalar_one_or_none()
    if opened is None:
        conn.execute(
            sa.update(incident)
            .where(
                incident.c.job == job,
                incident.c.condition == BLOCKED,
                incident.c.resolved_at.is_(None),
            )
            .values(firings=incident.c.firings + 1)
        )
        return []
    return [run_id] if _queue_mails(conn, job, run_id, BLOCKED) else []


def resolve_cleared(conn: Connection, blocked: Mapping[str, str]) -> list[int]:
    """Resolve the open block incidents of every job the check no longer blocks, queueing
    one ``unblocked`` mail each (on the run that opened it). Returns the runs to mail."""
    resolved = conn.execute(
        sa.update(incident)
        .where(
            incident.c.condition == BLOCKED,
            incident.c.resolved_at.is_(None),
            incident.c.job.not_in(list(blocked)),
        )
        .values(resolved_at=sa.func.now())
        .returning(incident.c.job, incident.c.run_id)
    ).all()
    return [row.run_id for row in resolved if _queue_mails(conn, row.job, row.run_id, "unblocked")]
