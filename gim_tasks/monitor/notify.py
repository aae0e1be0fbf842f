"""Job notifications by e-mail (SPEC A3).

Subscriptions name a job and a recipient (a user, whose e-mail address is used, or an
address) with send-on-success and/or send-on-error. The database trigger ``job_run_notify``
(migration 0008) writes one ``notification`` row per recipient in the transaction that ends a
run, so a mail is never forgotten whichever process ends the run. Delivery is at-least-once:

* the worker that ended the run sends the Celery task ``gim.notify`` at once;
* the task locks each pending row (``FOR UPDATE SKIP LOCKED``, so two senders never mail the
  same row at the same time), sends it by SMTP and marks it sent in that transaction; on an
  SMTP error it records the attempt and the task retries with back-off;
* the beat relays rows whose retry time has passed (a lost task, a worker restart).

Besides a run's end, a mail can be about a block of the configuration check (kinds
``blocked`` and ``unblocked``, one each per block: :mod:`gim_tasks.monitor.incidents`), queued
by the beat in the tick that records it.

A mail failure only touches the ``notification`` row: the run's state never changes.
"""

from __future__ import annotations

import email.policy
import logging
import smtplib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gim_tasks.db.tables import (
    incident,
    job_run,
    notification,
    notification_subscription,
    web_user,
)
from gim_tasks.errors import Conflict, GimError, NotFound
from gim_tasks.lifecycle import RunState, outcome
from gim_tasks.monitor import audit
from gim_tasks.options import store
from gim_tasks.schedule.jobs import BY_NAME, JOB_NAMES
from gim_tasks.schedule.localtime import zone
from gim_tasks.settings import Settings

log = logging.getLogger("gim_tasks.monitor.notify")

SUCCESS_STATES = (RunState.COMPLETED, RunState.COMPLETED_WITH_WARNINGS)
ERROR_STATES = (RunState.FAILED, RunState.STOPPED)
#: After this many failed attempts a mail is given up (state failed, error kept).
MAX_ATTEMPTS = 12
SMTP_TIMEOUT_SECONDS = 20
#: Failures a retry may cure (the network, the SMTP server, a webhook's receiver: urllib's
#: errors are OSErrors). Anything else (a message that cannot be composed) is final.
TRANSIENT = (TimeoutError, OSError, smtplib.SMTPException)


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... capped at one hour."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


def _is_address(text: str) -> bool:
    try:
        check_address(text)
    except GimError:
        return False
    return True


def check_address(text: str) -> str:
    """An e-mail address a mail can be sent to, or :class:`GimError` saying why not: no control
    character (a line feed would break the mail's headers, issue 41), one ``local@domain`` as
    the standard library's parser reads it, a dotted domain (or ``localhost``)."""
    address = text.strip()
    if any(ord(char) < 32 or ord(char) == 127 for char in address):
        raise GimError(f"e-mail address {address!r} contains a control character")
    try:
        parsed = Address(addr_spec=address)
    except (ValueError, IndexError, TypeError, HeaderParseError) as error:
        raise GimError(
            f"'{address}' is not an e-mail address (name@example.com): {error}"
        ) from None
    dotted = "." in parsed.domain or parsed.domain == "localhost"
    if not parsed.username or not dotted or parseaddr(address)[1] != address:
        raise GimError(f"'{address}' is not an e-mail address (name@example.com)")
    return address


def add_subscription(
    engine: Engine, job: str, recipient: str, on_success: bool, on_error: bool, actor: str
) -> int:
    """Subscribe ``recipient`` (a user name or an e-mail address) to ``job``'s run ends."""
    if job not in JOB_NAMES:
        raise GimError(f"unknown job '{job}'; jobs are {', '.join(JOB_NAMES)}")
    recipient = recipient.strip()
    if not on_success and not on_error:
        raise GimError("choose send on success, send on error, or both")
    with engine.begin() as conn:
        _check_recipient(conn, recipient)
        row = conn.execute(_upsert(job, recipient, on_success, on_error, actor)).scalar_one()
        after = {"recipient": recipient, "on_success": on_success, "on_error": on_error}
        audit.record(conn, audit.Action.SUBSCRIPTION_SAVE, job, actor, after=after)
    return int(row)


def _check_recipient(conn: Connection, recipient: str) -> None:
    """A recipient is a user with an e-mail address, or an address."""
    user = conn.execute(
        sa.select(web_user.c.email).where(web_user.c.name == recipient)
    ).one_or_none()
    if user is None and not _is_address(recipient):
        raise NotFound(
            f"recipient '{recipient}' is neither a user nor an e-mail address (name@example.com)"
        )
    if user is not None and not user.email:
        raise Conflict(
            f"user '{recipient}' has no e-mail address; set one with "
            f"`gim user update {recipient} --email ADDRESS`"
        )


def save_job_subscriptions(
    engine: Engine,
    job: str,
    keep: dict[int, tuple[bool, bool]],
    add: list[tuple[str, bool, bool]],
    actor: str,
) -> tuple[int, int, int]:
    """Alma's "Email notifications" page of one job, saved at once (A3): ``keep`` maps each of
    the job's subscriptions to its new (send on success, send on error), one with neither is
    removed; ``add`` lists new recipients (users or addresses). One transaction: a bad
    recipient or a subscription of another job saves nothing. Returns (changed, removed,
    added)."""
    if job not in JOB_NAMES:
        raise NotFound(f"unknown job '{job}'; jobs are {', '.join(JOB_NAMES)}")
    changed = removed = added = 0
    with engine.begin() as conn:
        mine = {
            row.id: row
            for row in conn.execute(
                sa.select(notification_subscription)
                .where(notification_subscription.c.job == job)
                .with_for_update()
            )
        }
        for subscription_id, (on_success, on_error) in keep.items():
            row = mine.get(subscription_id)
            if row is None:
                raise NotFound(f"subscription {subscription_id} is not one of {job}'s")
            if not on_success and not on_error:
                conn.execute(
                    sa.delete(notification_subscription).where(
                        notification_subscription.c.id == subscription_id
                    )
                )
                removed += 1
            elif (row.on_success, row.on_error) != (on_success, on_error):
                conn.execute(
                    sa.update(notification_subscription)
                    .where(notification_subscription.c.id == subscription_id)
                    .values(on_success=on_success, on_error=on_error, created_by=actor)
                )
                changed += 1
        for recipient, on_success, on_error in add:
            recipient = recipient.strip()
            if not on_success and not on_error:
                raise GimError(f"{recipient}: choose send on success, send on error, or both")
            _check_recipient(conn, recipient)
            conn.execute(_upsert(job, recipient, on_success, on_error, actor))
            added += 1
        audit.record(
            conn,
            audit.Action.SUBSCRIPTION_SAVE,
            job,
            actor,
            before={
                str(i): {
                    "recipient": r.recipient,
                    "on_success": r.on_success,
                    "on_error": r.on_error,
                }
                for i, r in mine.items()
            },
            after={"changed": changed, "removed": removed, "added": [a[0] for a in add]},
        )
    return changed, removed, added


def _upsert(job: str, recipient: str, on_success: bool, on_error: bool, actor: str) -> Any:
    from sqlalchemy.dialects.postgresql import insert

    statement = insert(notification_subscription).values(
        job=job, recipient=recipient, on_success=on_success, on_error=on_error, created_by=actor
    )
    return statement.on_conflict_do_update(
        constraint="uq_notification_subscription_job_recipient",
        set_={"on_success": on_success, "on_error": on_error, "created_by": actor},
    ).returning(notification_subscription.c.id)


def remove_subscription(engine: Engine, subscription_id: int, actor: str) -> None:
    with engine.begin() as conn:
        deleted = conn.execute(
            sa.delete(notification_subscription)
            .where(notification_subscription.c.id == subscription_id)
            .returning(notification_subscription)
        ).one_or_none()
        if deleted is not None:
            before = {
                "recipient": deleted.recipient,
                "on_success": deleted.on_success,
                "on_error": deleted.on_error,
            }
            audit.record(conn, audit.Action.SUBSCRIPTION_REMOVE, deleted.job, actor, before=before)
    if deleted is None:
        raise NotFound(f"subscription {subscription_id} does not exist")


def list_subscriptions(engine: Engine, job: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(notification_subscription).order_by(
        notification_subscription.c.job, notification_subscription.c.recipient
    )
    if job is not None:
        query = query.where(notification_subscription.c.job == job)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query).all()]


def notifications_of(conn: Connection, run_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(notification).where(notification.c.run_id == run_id).order_by(notification.c.id)
    ).all()
    return [dict(row._mapping) for row in rows]


@dataclass(frozen=True)
class Letter:
    """What a mail says besides the run: the incident it is about (``blocked`` and
    ``unblocked`` mails) and, for a run's end, its discards by reason (most frequent first)."""

    kind: str = "end"
    incident: sa.Row[Any] | None = None
    discards: tuple[tuple[str, int], ...] = ()


def compose(
    run: sa.Row[Any], to: str, settings: Settings, tz_name: str, letter: Letter | None = None
) -> EmailMessage:
    """A job letter (A3): job and category, run, outcome and stop kind, trigger and actor,
    planned/started/ended in the schedule's zone, counts, warnings, error, discards and a
    link; or the start or end of a block of the configuration check (R4, one mail each)."""
    letter = letter or Letter()
    tz = zone(tz_name)

    def local(value: datetime | None) -> str:
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z") if value else "-"

    link = f"{settings.web_base_url.rstrip('/')}/runs/{run.id}"
    category = BY_NAME[run.job].category if run.job in BY_NAME else "-"
    head = [f"Job:        {run.job} ({category})"]
    if letter.kind == "end":
        state = run.state
        if state == RunState.COMPLETED_WITH_WARNINGS:
            headline = f"{state} ({run.warnings} warning{'s' if run.warnings != 1 else ''})"
        else:
            headline = state
        result = outcome(run.state, run.stop_kind, run.skip)
        lines = [
            *head,
            f"Run:        {run.id} ({run.trigger}, by {run.actor})",
            f"State:      {headline}",
            f"Outcome:    {result or '-'}"
            + (f" (stop kind {run.stop_kind})" if run.stop_kind else ""),
            f"Planned:    {local(run.planned_at)}",
            f"Started:    {local(run.started_at)}",
            f"Ended:      {local(run.ended_at)}",
            f"Rows:       read {run.rows_read:,}, written {run.rows_written:,}, "
            f"discarded {run.rows_discarded:,}",
            f"Warnings:   {run.warnings}",
        ]
        if run.error:
            lines.append(f"Error:      {run.error}")
        if run.reason and state in (RunState.STOPPED, RunState.REJECTED, RunState.CANCELLED):
            lines.append(f"Reason:     {run.reason}")
        if run.ended_by and state in (RunState.STOPPED, RunState.CANCELLED):
            lines.append(f"By:         {run.ended_by}")
        if letter.discards:
            lines.append("Discarded rows by reason:")
            lines += [f"  {count:,} x {reason}" for reason, count in letter.discards]
        subject = f"[gim-tasks] {run.job} run {run.id}: {headline}"
    else:
        block = letter.incident
        opened = local(block.opened_at) if block is not None else local(run.created_at)
        lines = [
            *head,
            f"Blocked:    since {opened}, first at the firing planned for "
            f"{local(run.planned_at)} (run {run.id})",
            f"Reason:     {block.detail if block is not None else run.reason}",
        ]
        if letter.kind == "blocked":
            subject = f"[gim-tasks] {run.job} blocked: scheduled firings do not start"
            lines += [
                "",
                "Every scheduled firing of this job is refused until the configuration check",
                "passes (C2): each is a failure in History. No further mail is sent for this",
                "block; one follows when it clears. Fix the items above (`gim config check`).",
            ]
        else:
            firings = block.firings if block is not None else 1
            subject = f"[gim-tasks] {run.job} no longer blocked"
            lines += [
                f"Cleared:    {local(block.resolved_at) if block is not None else '-'}",
                f"Firings:    {firings} blocked firing{'s' if firings != 1 else ''}",
                "",
                "The configuration check no longer blocks this job: its next firing starts.",
            ]
    lines += ["", f"Details: {link}", ""]
    # Lines up to 998 characters are allowed (RFC 5322); not folding keeps subjects intact.
    message = EmailMessage(policy=email.policy.SMTP.clone(max_line_length=998))
    message["Subject"] = subject
    message["From"] = settings.mail_from
    message["To"] = to
    message["X-Gim-Run"] = str(run.id)
    message["X-Gim-Kind"] = letter.kind
    message.set_content("\n".join(lines))
    return message


def _letter(conn: Connection, kind: str, run_id: int) -> Letter:
    if kind != "end":
        block = conn.execute(
            sa.select(incident).where(incident.c.run_id == run_id).order_by(incident.c.id.desc())
        ).first()
        return Letter(kind, incident=block)
    from gim_tasks.db.mart_tables import discard

    rows = conn.execute(
        sa.select(discard.c.reason, sa.func.count().label("n"))
        .where(discard.c.run_id == run_id)
        .group_by(discard.c.reason)
        .order_by(sa.func.count().desc(), discard.c.reason)
        .limit(5)
    ).all()
    return Letter(kind, discards=tuple((row.reason, row.n) for row in rows))


def address_of(conn: Connection, recipient: str) -> str | None:
    if "@" in recipient and _is_address(recipient):
        return recipient
    return conn.execute(
        sa.select(web_user.c.email).where(web_user.c.name == recipient)
    ).scalar_one_or_none()


def send_message(message: EmailMessage, settings: Settings) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
        smtp.send_message(message)


def deliver(
    engine: Engine, settings: Settings, run_id: int | None = None, now: datetime | None = None
) -> tuple[int, int]:
    """Send pending mails: of one run (whatever their retry time: the caller is that retry),
    or all that are due. Returns (sent, still pending after a failed attempt). Each mail is its
    own transaction: the row lock keeps a second sender away while the SMTP conversation
    runs, and ``sent`` is committed with it."""
    sent = retry = 0
    clock = now or datetime.now(UTC)
    with engine.connect() as conn:
        tz_name = store.load_options(conn).schedule().timezone
    while True:
        with engine.begin() as conn:
            query = (
                sa.select(notification)
                .where(notification.c.state == "pending")
                .order_by(notification.c.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if run_id is not None:
                query = query.where(notification.c.run_id == run_id)
            else:
                query = query.where(notification.c.next_attempt_at <= clock)
            row = conn.execute(query).one_or_none()
            if row is None:
                return sent, retry
            run = conn.execute(sa.select(job_run).where(job_run.c.id == row.run_id)).one()
            to = address_of(conn, row.recipient)
            error: str | None = None
            permanent = False  # a failure no retry can cure (the message cannot be composed)
            if to is None:
                error = f"recipient '{row.recipient}' has no e-mail address"
            elif not settings.smtp_host:
                error = "GIM_SMTP_HOST is not set"
            else:
                try:
                    send_message(
                        compose(run, to, settings, tz_name, _letter(conn, row.kind, run.id)),
                        settings,
                    )
                except Exception as failure:
                    # Whatever fails for this mail (the network, or a stored address the
                    # message cannot carry) is recorded on its row and the loop goes on to
                    # the next: one bad row never holds up the others (issue 41).
                    error = f"{type(failure).__name__}: {failure}"
                    if not isinstance(failure, TRANSIENT):
                        permanent = True
                        log.exception("run %s: mail to %s could not be composed", row.run_id, to)
            if error is None:
                conn.execute(
                    sa.update(notification)
                    .where(notification.c.id == row.id)
                    .values(state="sent", sent_at=sa.func.now(), attempts=row.attempts + 1)
                )
                sent += 1
                log.info("run %s: mailed %s", row.run_id, to)
                continue
            attempts = row.attempts + 1
            # Without an SMTP server or an address, retrying cannot help: recorded, not sent.
            final = attempts >= MAX_ATTEMPTS or to is None or not settings.smtp_host or permanent
            conn.execute(
                sa.update(notification)
                .where(notification.c.id == row.id)
                .values(
                    state="failed" if final else "pending",
                    attempts=attempts,
                    last_error=error[:500],
                    next_attempt_at=clock + backoff(attempts),
                )
            )
            log.warning(
                "run %s: mail to %s failed (attempt %s): %s", row.run_id, to, attempts, error
            )
            if not final:
                retry += 1
            if run_id is None or final:
                continue
            # This run's remaining mails wait for the retry as well (same SMTP server).
            return sent, retry


def due_runs(engine: Engine, now: datetime) -> list[int]:
    """Runs with mails whose (re)try time has passed: the beat relays them (lost tasks)."""
    with engine.begin() as conn:
        rows = conn.execute(
            sa.update(notification)
            .where(
                notification.c.state == "pending",
                notification.c.next_attempt_at <= now - timedelta(seconds=60),
            )
            # Claimed for five minutes, so the next ticks do not send the same task again.
            .values(next_attempt_at=now + timedelta(minutes=5))
            .returning(notification.c.run_id)
        ).all()
    return sorted({row.run_id for row in rows})


def has_pending(engine: Engine, run_id: int) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(notification)
                .where(notification.c.run_id == run_id, notification.c.state == "pending")
            ).scalar_one()
        )


NOTIFY_TASK = "gim.notify"


def send_task(app: Any, run_id: int) -> None:
    app.send_task(NOTIFY_TASK, args=[run_id], queue="notify")
