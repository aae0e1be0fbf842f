"""Users, roles and API tokens (SPEC A5).

Passwords are hashed with argon2id (argon2-cffi, the maintained binding of the reference
implementation, with its recommended parameters). API tokens are 256-bit random strings shown
once; only their SHA-256 is stored, which is enough for high-entropy secrets and keeps the
lookup an index probe. Roles are ordered: viewer < operator < admin.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine

from gim_tasks.db.tables import ROLES, api_token, web_session, web_user
from gim_tasks.errors import GimError
from gim_tasks.monitor import audit

_hasher = PasswordHasher()
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
TOKEN_PREFIX = "gim_"
# A hash to verify against when the user does not exist, so that a wrong name and a wrong
# password take the same time (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash("not a password of anyone")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user and how they authenticated."""

    user_id: int
    name: str
    role: str
    via: str  # "session" | "token"

    def may(self, needed: str) -> bool:
        return allows(self.role, needed)


def allows(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise GimError(f"unknown role '{role}'; roles are {', '.join(ROLES)}")
    return role


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise GimError(
            f"user name '{name}' is not allowed: use 1-64 letters, digits, '_', '.', '@' or '-'"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise GimError(f"the password is too short: at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise GimError("the password is too long: at most 1024 characters")
    return password


def add_user(
    engine: Engine, name: str, role: str, password: str, actor: str, email: str | None = None
) -> int:
    check_name(name)
    check_role(role)
    check_password(password)
    if email is not None:
        from gim_tasks.monitor.notify import check_address  # mails are composed from it (issue 41)

        email = check_address(email)
    try:
        with engine.begin() as conn:
            user_id = conn.execute(
                sa.insert(web_user)
                .values(
                    name=name,
                    role=role,
                    password_hash=_hasher.hash(password),
                    email=email,
                    created_by=actor,
                )
                .returning(web_user.c.id)
            ).scalar_one()
            after = {"role": role, "email": email}
            audit.record(conn, audit.Action.USER_ADD, name, actor, after=after)
            return int(user_id)
    except sa.exc.IntegrityError:  # uq_web_user_name
        raise GimError(f"user '{name}' already exists") from None


def update_user(
    engine: Engine,
    name: str,
    role: str | None = None,
    password: str | None = None,
    email: str | None = None,
    keep_tokens: bool = False,
    *,
    actor: str,
) -> dict[str, int]:
    """Change a user. A new password or role ends every session of the user at once; a new
    password also revokes the user's API tokens unless ``keep_tokens``. Returns how many
    sessions and tokens ended."""
    values: dict[str, Any] = {}
    if role is not None:
        values["role"] = check_role(role)
    if password is not None:
        values["password_hash"] = _hasher.hash(check_password(password))
    if email is not None:
        from gim_tasks.monitor.notify import check_address

        values["email"] = check_address(email) if email else None
    if not values:
        raise GimError("nothing to change: give --role, --password-stdin or --email")
    ended = {"sessions": 0, "tokens": 0}
    with engine.begin() as conn:
        before = conn.execute(
            sa.select(web_user.c.role, web_user.c.email).where(web_user.c.name == name)
        ).one_or_none()
        user_id = conn.execute(
            sa.update(web_user)
            .where(web_user.c.name == name)
            .values(values)
            .returning(web_user.c.id)
        ).scalar_one_or_none()
        if user_id is None or before is None:
            raise GimError(f"user '{name}' does not exist")
        if role is not None or password is not None:
            ended["sessions"] = conn.execute(
                sa.delete(web_session).where(web_session.c.user_id == user_id)
            ).rowcount
        if password is not None and not keep_tokens:
            ended["tokens"] = conn.execute(
                sa.delete(api_token).where(api_token.c.user_id == user_id)
            ).rowcount
        # That the password changed, never what to (nor its hash).
        shown = {k: v for k, v in values.items() if k != "password_hash"}
        audit.record(
            conn,
            audit.Action.USER_UPDATE,
            name,
            actor,
            before=dict(before._mapping),
            after={
                **shown,
                **({"password_changed": True} if password is not None else {}),
                **ended,
            },
        )
    return ended


def remove_user(engine: Engine, name: str, actor: str) -> None:
    with engine.begin() as conn:
        gone = conn.execute(
            sa.delete(web_user)
            .where(web_user.c.name == name)
            .returning(web_user.c.role, web_user.c.email)
        ).one_or_none()
        if gone is None:
            raise GimError(f"user '{name}' does not exist")
        audit.record(conn, audit.Action.USER_REMOVE, name, actor, before=dict(gone._mapping))


def list_users(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                web_user.c.name,
                web_user.c.role,
                web_user.c.email,
                web_user.c.created_at,
                web_user.c.created_by,
            ).order_by(web_user.c.name)
        ).all()
    return [dict(row._mapping) for row in rows]


def authenticate(engine: Engine, name: str, password: str) -> Principal | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                web_user.c.id, web_user.c.name, web_user.c.role, web_user.c.password_hash
            ).where(web_user.c.name == name)
        ).one_or_none()
    try:
        _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        try:
            with engine.begin() as conn:
                conn.execute(
                    sa.update(web_user)
                    .where(web_user.c.id == row.id)
                    .values(password_hash=_hasher.hash(password))
                )
        except sa.exc.ProgrammingError:  # the web's role may not write users: next CLI login
            pass
    return Principal(row.id, row.name, row.role, "session")


# ----- sessions --------------------------------------------------------------------------


def create_session(engine: Engine, who: Principal, client: str | None, hours: int) -> str:
    """A new server-side session; returns its random id (for the cookie; only its SHA-256 is
    stored). Its absolute end is fixed now: nothing extends it."""
    session_id = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(web_session).values(
                id_sha256=_digest(session_id),
                user_id=who.user_id,
                client=client,
                expires_at=sa.func.now() + sa.func.make_interval(0, 0, 0, 0, hours),
            )
        )
        # Expired sessions say nothing: keep the table small.
        conn.execute(sa.delete(web_session).where(web_session.c.expires_at < sa.func.now()))
        audit.identify(who.name, who.role)
        audit.record(conn, audit.Action.LOGIN, who.name, who.name)
    return session_id


def session_principal(engine: Engine, session_id: str, idle_minutes: int) -> Principal | None:
    """The user of a live session (not ended, not past its absolute end, used within the idle
    time), as stored now; a removed user, a changed role or password ended it already."""
    if not isinstance(session_id, str) or len(session_id) > 100:
        return None
    digest = _digest(session_id)
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(web_user.c.id, web_user.c.name, web_user.c.role, web_session.c.last_seen_at)
            .join(web_user, web_user.c.id == web_session.c.user_id)
            .where(
                web_session.c.id_sha256 == digest,
                web_session.c.expires_at > sa.func.now(),
                web_session.c.last_seen_at
                > sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, idle_minutes),
            )
        ).one_or_none()
        if row is None:
            return None
        # The idle clock, written at most every 30 s (a page view should not always write).
        conn.execute(
            sa.update(web_session)
            .where(
                web_session.c.id_sha256 == digest,
                web_session.c.last_seen_at < sa.func.now() - sa.text("interval '30 seconds'"),
            )
            .values(last_seen_at=sa.func.now())
        )
    return Principal(row.id, row.name, row.role, "session")


def end_session(engine: Engine, session_id: str, actor: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.delete(web_session).where(web_session.c.id_sha256 == _digest(session_id)))
        audit.record(conn, audit.Action.LOGOUT, actor, actor)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    engine: Engine,
    name: str,
    label: str = "",
    expires_days: int | None = None,
    max_days: int = 0,
    *,
    actor: str,
) -> str:
    """A new API token for user ``name``, valid until revoked or for ``expires_days``; the
    token itself is returned once, never stored. ``max_days`` (GIM_WEB_TOKEN_MAX_DAYS, 0: no
    limit) refuses a token without an expiry or one that lives longer."""
    if max_days and (expires_days is None or expires_days > max_days):
        raise GimError(
            f"tokens live at most {max_days} days here (GIM_WEB_TOKEN_MAX_DAYS): give "
            f"--expires-days 1 to {max_days}"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        user_id = conn.execute(
            sa.select(web_user.c.id).where(web_user.c.name == name)
        ).scalar_one_or_none()
        if user_id is None:
            raise GimError(f"user '{name}' does not exist; add it with `gim user add`")
        token_id = conn.execute(
            sa.insert(api_token)
            .values(
                user_id=user_id,
                label=label or "api",
                token_sha256=_digest(token),
                expires_at=None
                if expires_days is None
                else sa.func.now() + sa.func.make_interval(0, 0, 0, expires_days),
            )
            .returning(api_token.c.id)
        ).scalar_one()
        after = {"token_id": token_id, "label": label or "api", "expires_days": expires_days}
        audit.record(conn, audit.Action.TOKEN_CREATE, name, actor, after=after)
    return token


def token_principal(engine: Engine, token: str) -> Principal | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    with engine.begin() as conn:
        row = conn.execute(
            sa.update(api_token)
            .where(
                api_token.c.token_sha256 == _digest(token),
                sa.or_(api_token.c.expires_at.is_(None), api_token.c.expires_at > sa.func.now()),
            )
            .values(last_used_at=sa.func.now())
            .returning(api_token.c.user_id)
        ).one_or_none()
        if row is None:
            return None
        user = conn.execute(
            sa.select(web_user.c.id, web_user.c.name, web_user.c.role).where(
                web_user.c.id == row.user_id
            )
        ).one()
    return Principal(user.id, user.name, user.role, "token")


def list_tokens(engine: Engine, name: str | None = None) -> list[dict[str, Any]]:
    query = (
        sa.select(
            api_token.c.id,
            web_user.c.name.label("user"),
            api_token.c.label,
            api_token.c.created_at,
            api_token.c.last_used_at,
            api_token.c.expires_at,
        )
        .join(web_user, web_user.c.id == api_token.c.user_id)
        .order_by(api_token.c.id)
    )
    if name is not None:
        query = query.where(web_user.c.name == name)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query).all()]


def revoke_token(engine: Engine, token_id: int, actor: str) -> None:
    with engine.begin() as conn:
        gone = conn.execute(
            sa.delete(api_token).where(api_token.c.id == token_id).returning(api_token.c.label)
        ).scalar_one_or_none()
        if gone is None:
            raise GimError(f"token {token_id} does not exist (see `gim token list`)")
        audit.record(conn, audit.Action.TOKEN_REVOKE, token_id, actor, before={"label": gone})
