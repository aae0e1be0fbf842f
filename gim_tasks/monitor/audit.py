"""The audit trail (SPEC P6): one append-only ``audit_event`` row per mutating action.

Every function that changes what the system will do (or who may do it) calls :func:`record`
with the connection of its own transaction, so the row commits with the change or not at all
(a refused request, rolled back, leaves none). The actor comes from the caller, as before;
the *channel*, the request id and the client address come from the edge the call entered by:

* the web app's middleware opens an :class:`Origin` per request (``web`` for pages, ``api``
  for ``/api/*``) and the role check fills in the principal's name and role;
* the Celery task of a raw message (``celery call``, Flower) opens ``celery``; the beat opens
  ``beat`` for its own decisions (a pause that ends, P5's pause after failures);
* anything else (``gim``, a Python shell, a script) is ``cli``.

The role is the web role of the caller on ``web``/``api``; elsewhere the PostgreSQL role the
process connects as (``current_user``), since that is what bounds what it could do. Secrets are
never passed in; :func:`_clean` drops any key that could hold one all the same.

Append-only is the database's rule, not this module's: migration 0019's trigger refuses
UPDATE, DELETE and TRUNCATE to every role, the owner included; the web role has INSERT and
SELECT only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gim_tasks.db.tables import audit_event
from gim_tasks.lifecycle import Channel


class Action(StrEnum):
    """Every audited action; ``gim audit --action`` takes these words."""

    RUN = "run"  # a manual run requested (M1; forced: M7), any channel
    STOP = "stop"
    CANCEL = "cancel"
    PLAN_RUN = "plan-run"  # P4
    CANCEL_PLANNED = "cancel-planned"
    PAUSE = "pause"  # P1
    RESUME = "resume"
    PAUSE_ENDED = "pause-ended"  # the beat, at a pause's until
    PAUSE_ON_FAILURE = "pause-on-failure"  # the beat (P5)
    SKIP = "skip"  # P2
    BLACKOUT_ADD = "blackout-add"  # P3
    BLACKOUT_REMOVE = "blackout-remove"
    OPTION_SET = "option-set"
    OPTION_UNSET = "option-unset"
    OPTION_IMPORT = "option-import"
    SUBSCRIPTION_SAVE = "subscription-save"  # A3: added or changed
    SUBSCRIPTION_REMOVE = "subscription-remove"
    WEBHOOK_ADD = "webhook-add"
    WEBHOOK_REMOVE = "webhook-remove"
    USER_ADD = "user-add"
    USER_UPDATE = "user-update"  # role, e-mail or password (never the password itself)
    USER_REMOVE = "user-remove"
    TOKEN_CREATE = "token-create"  # never the token itself
    TOKEN_REVOKE = "token-revoke"
    INCIDENT_ACK = "incident-ack"  # P7
    NOTE = "note"  # P7
    BACKFILL_CREATE = "backfill-create"  # B1
    BACKFILL_PAUSE = "backfill-pause"
    BACKFILL_RESUME = "backfill-resume"
    BACKFILL_CANCEL = "backfill-cancel"
    CHECK_OVERRIDE = "check-override"  # Q3: an admin releases a failing check with a reason
    LOGIN = "login"
    LOGIN_FAILED = "login-failed"
    LOGOUT = "logout"
    SCHEMA_UPGRADE = "schema-upgrade"
    GRANT_WEB = "grant-web"


ACTIONS = tuple(action.value for action in Action)

#: Keys whose values are never stored, at any depth (guards a caller's mistake).
SECRET_KEYS = frozenset(
    {"password", "password_hash", "token", "token_sha256", "id_sha256", "secret", "sid"}
)


@dataclass
class Origin:
    """Where the current action came from. Mutable on purpose: the web's role check runs in
    another context than the route's body and fills in who called on the same object."""

    channel: Channel
    actor: str | None = None
    role: str | None = None
    request_id: str | None = None
    client: str | None = None


_ORIGIN: ContextVar[Origin | None] = ContextVar("gim_audit_origin", default=None)


@contextmanager
def origin(channel: Channel, **details: Any) -> Iterator[Origin]:
    """Everything audited inside the block says it came from ``channel``."""
    entered = Origin(channel, **details)
    token = _ORIGIN.set(entered)
    try:
        yield entered
    finally:
        _ORIGIN.reset(token)


def current() -> Origin:
    return _ORIGIN.get() or Origin(Channel.CLI)


def identify(actor: str, role: str) -> None:
    """The web's role check: the caller of this request is ``actor`` with ``role``."""
    found = _ORIGIN.get()
    if found is not None:
        found.actor, found.role = actor, role


def new_request_id() -> str:
    return uuid.uuid4().hex


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items() if str(k).lower() not in SECRET_KEYS}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def record(
    conn: Connection,
    action: Action,
    target: str | int | None,
    actor: str,
    *,
    reason: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """One audit row, in ``conn``'s transaction (the caller's change commits with it)."""
    where = current()
    conn.execute(
        sa.insert(audit_event).values(
            actor=actor or where.actor or "unknown",
            role=where.role if where.role is not None else sa.func.current_user(),
            channel=where.channel.value,
            action=action.value,
            target="" if target is None else str(target),
            reason=reason,
            before=_clean(before) if before is not None else None,
            after=_clean(after) if after is not None else None,
            request_id=where.request_id,
            client=where.client,
        )
    )


def record_now(
    engine: Engine, action: Action, target: str | int | None, actor: str, **kw: Any
) -> None:
    """An action that is its own change (a login, a logout): one row in its own transaction."""
    with engine.begin() as conn:
        record(conn, action, target, actor, **kw)


@dataclass(frozen=True)
class Filter:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None  # paging: rows older than this id


def listing(conn: Connection, where: Filter, limit: int = 100) -> list[dict[str, Any]]:
    """Newest first. ``ix_audit_event_*`` answer the actor and target filters by time."""
    query = sa.select(audit_event).order_by(audit_event.c.id.desc()).limit(limit)
    if where.actor:
        query = query.where(audit_event.c.actor == where.actor)
    if where.action:
        query = query.where(audit_event.c.action == where.action)
    if where.target:
        query = query.where(audit_event.c.target == where.target)
    if where.since is not None:
        query = query.where(audit_event.c.at >= where.since)
    if where.until is not None:
        query = query.where(audit_event.c.at < where.until)
    if where.before_id is not None:
        query = query.where(audit_event.c.id < where.before_id)
    return [dict(row._mapping) for row in conn.execute(query).all()]
