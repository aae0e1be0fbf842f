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

from gim_tasks.db.tables import ROLES, api_token, web_user
from gim_tasks.errors import GimError

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
    if email is not None and "@" not in email:
        raise GimError(f"e-mail address '{email}' has no '@'")
    try:
        with engine.begin() as conn:
            return int(
                conn.execute(
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
            )
    except sa.exc.IntegrityError:  # uq_web_user_name
        raise GimError(f"user '{name}' already exists") from None


def update_user(
    engine: Engine,
    name: str,
    role: str | None = None,
    password: str | None = None,
    email: str | None = None,
) -> None:
    values: dict[str, Any] = {}
    if role is not None:
        values["role"] = check_role(role)
    if password is not None:
        values["password_hash"] = _hasher.hash(check_password(password))
    if email is not None:
        values["email"] = email or None
    if not values:
        raise GimError("nothing to change: give --role, --password-stdin or --email")
    with engine.begin() as conn:
        if not conn.execute(
            sa.update(web_user).where(web_user.c.name == name).values(values)
        ).rowcount:
            raise GimError(f"user '{name}' does not exist")


def remove_user(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        if not conn.execute(sa.delete(web_user).where(web_user.c.name == name)).rowcount:
            raise GimError(f"user '{name}' does not exist")


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
        with engine.begin() as conn:
            conn.execute(
                sa.update(web_user)
                .where(web_user.c.id == row.id)
                .values(password_hash=_hasher.hash(password))
            )
    return Principal(row.id, row.name, row.role, "session")


def user_by_id(engine: Engine, user_id: int) -> Principal | None:
    """The session's user as stored now: a removed user or a changed role counts at once."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(web_user.c.id, web_user.c.name, web_user.c.role).where(
                web_user.c.id == user_id
            )
        ).one_or_none()
    return Principal(row.id, row.name, row.role, "session") if row else None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, name: str, label: str = "") -> str:
    """A new API token for user ``name``; the token itself is returned once, never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        user_id = conn.execute(
            sa.select(web_user.c.id).where(web_user.c.name == name)
        ).scalar_one_or_none()
        if user_id is None:
            raise GimError(f"user '{name}' does not exist; add it with `gim user add`")
        conn.execute(
            sa.insert(api_token).values(
                user_id=user_id, label=label or "api", token_sha256=_digest(token)
            )
        )
    return token


def token_principal(engine: Engine, token: str) -> Principal | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    with engine.begin() as conn:
        row = conn.execute(
            sa.update(api_token)
            .where(api_token.c.token_sha256 == _digest(token))
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
        )
        .join(web_user, web_user.c.id == api_token.c.user_id)
        .order_by(api_token.c.id)
    )
    if name is not None:
        query = query.where(web_user.c.name == name)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query).all()]


def revoke_token(engine: Engine, token_id: int) -> None:
    with engine.begin() as conn:
        if not conn.execute(sa.delete(api_token).where(api_token.c.id == token_id)).rowcount:
            raise GimError(f"token {token_id} does not exist (see `gim token list`)")
