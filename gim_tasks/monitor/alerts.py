"""Incident messages by mail and webhook, and the webhooks themselves (SPEC O3).

:mod:`gim_tasks.monitor.incidents` queues one ``alert`` row per message (incident x opened or
resolved x recipient or webhook) in the transaction that opens or resolves the incident;
:func:`deliver` sends the due ones. It runs in every watchdog pass (web app or ``gim
watchdog``). Each row is locked ``FOR UPDATE SKIP LOCKED`` while it is sent and marked sent in
that transaction, so two replicas never send the same message at once; a failed attempt is
retried with back-off (30 s doubling to an hour) up to ``MAX_ATTEMPTS``, timed by the
database's clock.

A webhook receives a JSON POST: ``text`` (one line, for Slack-style receivers) and
``incident``, ``job``, ``condition``, ``event``, ``detail``, ``opened_at``, ``resolved_at``,
``run_id``, ``occurrences``. A 2xx answer is a delivery; anything else is retried.
"""

from __future__ import annotations

import email.policy
import ipaddress
import json
import logging
import urllib.error
import urllib.request
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from gim_tasks.db.tables import alert, incident, webhook
from gim_tasks.errors import GimError, NotFound
from gim_tasks.lifecycle import CONDITIONS
from gim_tasks.monitor import audit, notes, notify
from gim_tasks.settings import Settings

log = logging.getLogger("gim_tasks.monitor.alerts")

MAX_ATTEMPTS = 12
WEBHOOK_TIMEOUT_SECONDS = 10


def subject_of(row: Any) -> str:
    return row.job or "the scheduler"


def text_of(row: Any, event: str) -> str:
    """The one-line message (a webhook's ``text``, a mail's subject)."""
    who = subject_of(row)
    if event == "opened":
        return f"[gim-tasks] {row.condition} opened for {who}: {row.detail}"
    count = row.firings
    times = f", {count} occurrences" if count > 1 else ""
    return (
        f"[gim-tasks] {row.condition} resolved for {who} (open since {_iso(row.opened_at)}{times})"
    )


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def payload(row: Any, event: str) -> dict[str, Any]:
    return {
        "text": text_of(row, event),
        "incident": row.id,
        "job": row.job or None,
        "condition": row.condition,
        "event": event,
        "detail": row.detail,
        "opened_at": _iso(row.opened_at),
        "resolved_at": _iso(row.resolved_at),
        "run_id": row.run_id,
        "occurrences": row.firings,
    }


def _post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "gim-tasks"},
        method="POST",
    )
    # Operators run air-gapped: receivers are on their network; no proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    with opener.open(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
        if not 200 <= response.status < 300:
            raise OSError(f"HTTP {response.status}")


def _mail(to: str, row: Any, event: str, settings: Settings, written: list[dict[str, Any]]) -> None:
    body = payload(row, event)
    lines = [
        body["text"],
        "",
        f"Condition:  {row.condition}",
        f"Job:        {subject_of(row)}",
        f"Detail:     {row.detail}",
        f"Opened:     {body['opened_at']}",
    ]
    if event == "resolved":
        lines.append(f"Resolved:   {body['resolved_at']}")
    if row.acknowledged_at is not None:
        lines.append(f"Acknowledged: by {row.acknowledged_by} at {_iso(row.acknowledged_at)}")
    if written:  # P7: the operators' notes so far
        lines += ["", "Notes:"]
        lines += [f"  {n['at'][:16]} {n['actor']}: {n['text']}" for n in written]
    lines += ["", f"Alerts: {settings.web_base_url.rstrip('/')}/alerts", ""]
    message = EmailMessage(policy=email.policy.SMTP.clone(max_line_length=998))
    message["Subject"] = body["text"]
    message["From"] = settings.mail_from
    message["To"] = to
    message["X-Gim-Incident"] = str(row.id)
    message["X-Gim-Kind"] = f"{row.condition}-{event}"
    message.set_content("\n".join(lines))
    notify.send_message(message, settings)


def deliver(engine: Engine, settings: Settings) -> tuple[int, int]:
    """Send every due alert; returns (sent, failed attempts). Due and back-off times are the
    database's clock (rows are queued at its ``now()``), whoever sends."""
    sent = failed = 0
    while True:
        with engine.begin() as conn:
            row = conn.execute(
                sa.select(
                    alert.c.id.label("alert_id"),
                    alert.c.event,
                    alert.c.channel,
                    alert.c.target,
                    alert.c.attempts,
                    incident,
                )
                .join(incident, incident.c.id == alert.c.incident_id)
                .where(alert.c.state == "pending", alert.c.next_attempt_at <= sa.func.now())
                .order_by(alert.c.id)
                .limit(1)
                .with_for_update(of=alert, skip_locked=True)
            ).one_or_none()
            if row is None:
                return sent, failed
            error = None
            permanent = False  # a failure no retry can cure (the message cannot be composed)
            to = None
            try:
                if row.channel == "webhook":
                    _post(row.target, payload(row, row.event))
                else:
                    to = notify.address_of(conn, row.target)
                    if to is None:
                        error = f"recipient '{row.target}' has no e-mail address"
                    elif not settings.smtp_host:
                        error = "GIM_SMTP_HOST is not set"
                    else:
                        written = notes.notes_of(conn, notes.NoteOn.INCIDENT, [row.id])
                        _mail(to, row, row.event, settings, written.get(str(row.id), []))
            except Exception as failure:
                # Recorded on this row (attempt counted, last error), and the loop goes on:
                # one bad address or URL never holds up the alerts after it (issue 41).
                error = f"{type(failure).__name__}: {failure}"
                if not isinstance(failure, notify.TRANSIENT):
                    permanent = True
                    log.exception("incident %s %s to %s failed", row.id, row.event, row.target)
            attempts = row.attempts + 1
            if error is None:
                values: dict[str, Any] = {
                    "state": "sent",
                    "sent_at": sa.func.now(),
                    "attempts": attempts,
                }
                sent += 1
                log.info("incident %s %s: sent to %s", row.id, row.event, row.target)
            else:
                final = (
                    permanent
                    or attempts >= MAX_ATTEMPTS
                    or (row.channel == "mail" and (to is None or not settings.smtp_host))
                )
                values = {
                    "state": "failed" if final else "pending",
                    "attempts": attempts,
                    "last_error": error[:500],
                    "next_attempt_at": sa.func.now() + notify.backoff(attempts),
                }
                failed += 1
                log.warning(
                    "incident %s %s to %s failed (attempt %s): %s",
                    row.id,
                    row.event,
                    row.target,
                    attempts,
                    error,
                )
            conn.execute(sa.update(alert).where(alert.c.id == row.alert_id).values(**values))


# --- webhooks --------------------------------------------------------------------------------


def check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GimError(f"webhook URL '{url}' is not an http:// or https:// URL with a host")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        literal = None
    if literal is not None and literal.is_link_local:
        # 169.254.169.254 and the like answer cloud metadata, never a chat webhook (issue 41).
        raise GimError(f"webhook URL '{url}' points at a link-local address ({literal})")
    return url.strip()


def shown_target(channel: str, target: str) -> str:
    """What viewers see of a delivery's target: a webhook URL often carries its secret in its
    path or query, so only its scheme and host are shown (issue 41); a mail recipient as is."""
    if channel != "webhook":
        return target
    parts = urlsplit(target)
    return (
        f"{parts.scheme}://{parts.hostname or '?'}{':' + str(parts.port) if parts.port else ''}/…"
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook POST is answered where it was sent: a redirect is a failed delivery, never
    a GET to wherever it points (issue 41)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def parse_events(text: str | None) -> list[str]:
    """``--events failure,missed``: conditions, or an error naming the allowed ones."""
    if not text:
        return []
    events = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [event for event in events if event not in CONDITIONS]
    if unknown:
        raise GimError(
            f"unknown event {', '.join(unknown)}; events are conditions: {', '.join(CONDITIONS)}"
        )
    return list(dict.fromkeys(events))


def add_webhook(engine: Engine, url: str, events: list[str], actor: str) -> int:
    url = check_url(url)
    with engine.begin() as conn:
        hook_id = conn.execute(
            insert(webhook)
            .values(url=url, events=events, created_by=actor)
            .on_conflict_do_nothing(index_elements=["url"])
            .returning(webhook.c.id)
        ).scalar_one_or_none()
        if hook_id is not None:  # the URL's path and query may be its secret: never stored
            after = {"url": shown_target("webhook", url), "events": events}
            audit.record(conn, audit.Action.WEBHOOK_ADD, hook_id, actor, after=after)
    if hook_id is None:
        raise GimError(f"webhook {url} is configured already (gim webhook list)")
    return int(hook_id)


def remove_webhook(engine: Engine, hook_id: int, actor: str) -> None:
    with engine.begin() as conn:
        gone = conn.execute(
            sa.delete(webhook).where(webhook.c.id == hook_id).returning(webhook.c.url)
        ).scalar_one_or_none()
        if gone is None:
            raise NotFound(f"no webhook {hook_id} (gim webhook list)")
        before = {"url": shown_target("webhook", gone)}
        audit.record(conn, audit.Action.WEBHOOK_REMOVE, hook_id, actor, before=before)


def list_webhooks(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            {
                "id": row.id,
                "url": row.url,
                "events": list(row.events) or "all",
                "created_by": row.created_by,
                "created_at": _iso(row.created_at),
            }
            for row in conn.execute(sa.select(webhook).order_by(webhook.c.id))
        ]


# --- listing -----------------------------------------------------------------------------------


def list_incidents(
    conn: Connection, open_only: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    """Incidents, open ones first, newest first, each with its deliveries (``GET /api/alerts``,
    the Alerts tab, ``gim alerts``)."""
    query = (
        sa.select(incident)
        .order_by(incident.c.resolved_at.is_not(None), incident.c.opened_at.desc())
        .limit(limit)
    )
    if open_only:
        query = query.where(incident.c.resolved_at.is_(None))
    rows = conn.execute(query).all()
    written = notes.notes_of(conn, notes.NoteOn.INCIDENT, [row.id for row in rows])
    deliveries: dict[int, list[dict[str, Any]]] = {}
    if rows:
        for item in conn.execute(
            sa.select(alert)
            .where(alert.c.incident_id.in_([row.id for row in rows]))
            .order_by(alert.c.id)
        ):
            deliveries.setdefault(item.incident_id, []).append(
                {
                    "event": item.event,
                    "channel": item.channel,
                    "target": shown_target(item.channel, item.target),
                    "state": item.state,
                    "attempts": item.attempts,
                    "last_error": item.last_error,
                    "sent_at": _iso(item.sent_at),
                }
            )
    return [
        {
            "incident": row.id,
            "job": row.job or None,
            "condition": row.condition,
            "detail": row.detail,
            "run_id": row.run_id,
            "opened_at": _iso(row.opened_at),
            "resolved_at": _iso(row.resolved_at),
            "occurrences": row.firings,
            "acknowledged_at": _iso(row.acknowledged_at),
            "acknowledged_by": row.acknowledged_by,
            "notes": written.get(str(row.id), []),
            "deliveries": deliveries.get(row.id, []),
        }
        for row in rows
    ]
