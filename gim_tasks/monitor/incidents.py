"""Incidents: a condition of a job, opened once, resolved once, never repeated while open
(SPEC O3, R4, A3; issue 18 item 1, issue 20 item 3).

Conditions (``lifecycle.Condition``) and who judges them:

- ``blocked``: the configuration check blocks a job's scheduled firings (C2). The beat's tick.
- ``late``: a firing started later than ``[monitor] late-alert-seconds``; resolved by the
  job's next on-time start. The beat's tick.
- ``missed``: a firing got no decision by its instant + grace; resolved when the beat decides
  a firing of the job again. The watchdog.
- ``failure``: the job's newest ended run is a failure (R4); resolved by its next success.
  The watchdog.
- ``stale-data``: the newest data of a category is older than its SLO (O4). The watchdog;
  ``job`` is the job that produces the data (Job_TransformGIM, Job_AggregateGIM).
- ``scheduler-down``: no beat tick for ``SILENT_BEAT_SECONDS``. The watchdog; ``job`` is
  ``SCHEDULER`` (empty).

Opening or resolving queues the messages in the same transaction: one ``alert`` row per
configured webhook that takes the condition, and per mail recipient (the job's error
subscribers; every error subscriber for the scheduler). A block's mails keep the run letters of
issue 18 (``notification`` kinds ``blocked``/``unblocked``); a failure's mail is the failed
run's own letter (A3), so these two conditions queue webhooks only.

The partial unique index ``uq_incident_open`` (one open incident per job and condition) makes
opening idempotent whoever opens it: the beat (under the admission lock) or a watchdog pass
(under the watchdog try-lock) in any replica.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from gim_tasks.db.tables import (
    alert,
    incident,
    notification,
    notification_subscription,
    webhook,
)
from gim_tasks.lifecycle import Condition, Verdict
from gim_tasks.schedule.jobs import JOB_NAMES

if TYPE_CHECKING:
    from gim_tasks.monitor.ledger import Judged

BLOCKED = Condition.BLOCKED
#: The ``job`` of a scheduler-down incident.
SCHEDULER = ""
#: Conditions whose mails are run letters (``notification``), not incident alerts.
MAILED_AS_RUN_LETTERS = (Condition.BLOCKED, Condition.FAILURE)


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


def queue_alerts(conn: Connection, incident_id: int, job: str, condition: str, event: str) -> int:
    """Queue the ``opened`` or ``resolved`` message of an incident to every webhook that takes
    its condition and (but for run-letter conditions) to its mail recipients. Idempotent (the
    unique delivery key). Returns the number of rows queued."""
    hooks = sa.select(
        sa.literal(incident_id), sa.literal(event), sa.literal("webhook"), webhook.c.url
    ).where(
        sa.or_(
            sa.func.cardinality(webhook.c.events) == 0,
            sa.literal(condition) == sa.any_(webhook.c.events),
        )
    )
    columns = ["incident_id", "event", "channel", "target"]
    queued = conn.execute(
        insert(alert).from_select(columns, hooks).on_conflict_do_nothing().returning(alert.c.id)
    ).all()
    count = len(queued)
    if condition not in MAILED_AS_RUN_LETTERS:
        recipients = (
            sa.select(
                sa.literal(incident_id),
                sa.literal(event),
                sa.literal("mail"),
                notification_subscription.c.recipient,
            )
            .where(notification_subscription.c.on_error)
            .distinct()
        )
        if job in JOB_NAMES:  # the scheduler and data days: every error subscriber
            recipients = recipients.where(notification_subscription.c.job == job)
        count += len(
            conn.execute(
                insert(alert)
                .from_select(columns, recipients)
                .on_conflict_do_nothing()
                .returning(alert.c.id)
            ).all()
        )
    return count


def open_incident(
    conn: Connection, job: str, condition: str, detail: str, run_id: int | None = None
) -> int | None:
    """Open ``condition`` for ``job`` and queue its alerts; when one is open already, count
    this occurrence in it. Returns the new incident's id, or None if it was open."""
    opened = conn.execute(
        insert(incident)
        .values(job=job, condition=condition, detail=detail, run_id=run_id)
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
                incident.c.condition == condition,
                incident.c.resolved_at.is_(None),
            )
            .values(firings=incident.c.firings + 1)
        )
        return None
    queue_alerts(conn, opened, job, condition, "opened")
    return opened


def ensure_open(
    conn: Connection, job: str, condition: str, detail: str, run_id: int | None = None
) -> int | None:
    """Open ``condition`` for ``job`` unless it is open (a state, not an occurrence: the
    watchdog sees it on every pass and must not count it)."""
    exists = conn.execute(
        sa.select(incident.c.id).where(
            incident.c.job == job,
            incident.c.condition == condition,
            incident.c.resolved_at.is_(None),
        )
    ).scalar_one_or_none()
    if exists is not None:
        return None
    return open_incident(conn, job, condition, detail, run_id)


@dataclass(frozen=True)
class Resolved:
    id: int
    job: str
    run_id: int | None


def resolve(
    conn: Connection,
    condition: str,
    jobs: Iterable[str] | None = None,
    except_jobs: Iterable[str] | None = None,
) -> list[Resolved]:
    """Resolve the open ``condition`` incidents of ``jobs`` (or of every job but
    ``except_jobs``), queueing each one's ``resolved`` alerts."""
    where = [incident.c.condition == condition, incident.c.resolved_at.is_(None)]
    if jobs is not None:
        where.append(incident.c.job.in_(list(jobs)))
    if except_jobs is not None:
        where.append(incident.c.job.not_in(list(except_jobs)))
    rows = conn.execute(
        sa.update(incident)
        .where(*where)
        .values(resolved_at=sa.func.now())
        .returning(incident.c.id, incident.c.job, incident.c.run_id)
    ).all()
    for row in rows:
        queue_alerts(conn, row.id, row.job, condition, "resolved")
    return [Resolved(row.id, row.job, row.run_id) for row in rows]


def blocked_firing(conn: Connection, job: str, run_id: int, reason: str) -> list[int]:
    """A firing of ``job`` recorded as run ``run_id`` was blocked: open the job's incident
    (and queue its mail) or count the firing in the open one. Returns the runs to mail."""
    if open_incident(conn, job, BLOCKED, reason, run_id) is None:
        return []
    return [run_id] if _queue_mails(conn, job, run_id, BLOCKED) else []


def resolve_cleared(conn: Connection, blocked: Mapping[str, str]) -> list[int]:
    """Resolve the open block incidents of every job the check no longer blocks, queueing
    one ``unblocked`` mail each (on the run that opened it). Returns the runs to mail."""
    resolved = resolve(conn, BLOCKED, except_jobs=blocked)
    return [
        row.run_id
        for row in resolved
        if row.run_id is not None and _queue_mails(conn, row.job, row.run_id, "unblocked")
    ]


def after_verdicts(conn: Connection, judged: Iterable[Judged], late_limit: float) -> None:
    """The beat's incidents from the verdicts of its tick (``ledger.Judged``): a start later
    than ``late_limit`` opens ``late``; an on-time start resolves the job's ``late``; any
    decision but ``missed`` resolves its ``missed`` (the scheduler decides again)."""
    on_time, deciding = set(), set()
    for item in judged:
        job, verdict, lag = item.job, item.verdict, item.lag
        if verdict == Verdict.LATE and lag > late_limit:
            open_incident(
                conn,
                job,
                Condition.LATE,
                f"started {lag:.0f} s after its planned instant (limit {late_limit:g} s)",
                item.run_id,
            )
        if verdict == Verdict.ON_TIME:
            on_time.add(job)
        if verdict != Verdict.MISSED:
            deciding.add(job)
    if on_time:
        resolve(conn, Condition.LATE, jobs=on_time)
    if deciding:
        resolve(conn, Condition.MISSED, jobs=deciding)
