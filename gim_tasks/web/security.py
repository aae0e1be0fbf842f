"""Hardening of the web app (SPEC A5; issue "Security hardening"): the session-signing key,
browser security headers, login throttling and bounded password hashing.

- **Key.** ``GIM_WEB_SECRET`` signs the session cookie. The app refuses to start without one,
  with one shorter than 32 bytes, or with a known placeholder (the bug class of Airflow
  CVE-2020-17526 and Superset CVE-2023-27524). Sessions are also server-side records
  (``web_session``), so even a leaked key forges no session: a cookie only names a session
  that must exist in the database.
- **Headers.** Every response carries a Content-Security-Policy that allows only the app's own
  scripts and styles and no framing, ``X-Frame-Options: DENY``, ``nosniff``, a strict
  ``Referrer-Policy``; every response but static files ``Cache-Control: no-store``.
- **Throttling.** Every login attempt is reserved as a failure before its password is hashed
  (``login_failure``; a correct password removes it): an account and address pair with
  ``GIM_WEB_LOGIN_FAILURES`` failures in a minute is refused (429, ``Retry-After``); so is an
  account with that many from any addresses, except from an address it logged in from before
  (``login_success``); an address with that many over all accounts (a proxy, a NAT) is slowed,
  never refused. The client address is the TCP peer, or the client a trusted proxy
  (``GIM_WEB_TRUSTED_PROXIES``) forwards. Several web replicas share the counts (PostgreSQL).
- **Bounded hashing.** argon2id costs 64 MiB per verification: at most ``web_hash_slots``
  verifications run at once per process, so anonymous requests cannot exhaust its memory; a
  request that waits longer than a few seconds for a slot is answered 503 with Retry-After.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gim_tasks.db import locks
from gim_tasks.db.tables import login_failure, login_success
from gim_tasks.errors import SettingsError

#: A key's estimated entropy (length x log2 of its distinct characters) must reach this.
MIN_SECRET_BITS = 128
MIN_SECRET_BYTES = 32
#: Keys shipped in examples and earlier versions: never accepted.
KNOWN_PLACEHOLDERS = frozenset(
    {
        "CHANGE-ME",
        "change-me",
        "changeme",
        "CHANGEME",
        "dev-only-session-key",
        "web-secret",
        "secret",
        "a-long-random-string",
    }
)
HOW_TO_MAKE = "make one with `gim web-secret` (48 random bytes, URL-safe)"


def check_web_secret(secret: str) -> str:
    """The key, or :class:`SettingsError` naming GIM_WEB_SECRET and how to make one."""
    if not secret:
        raise SettingsError(
            f"GIM_WEB_SECRET is not set: the web app signs sessions with it; {HOW_TO_MAKE}"
        )
    if secret in KNOWN_PLACEHOLDERS or "change-me" in secret.lower():
        raise SettingsError(f"GIM_WEB_SECRET is a published placeholder; {HOW_TO_MAKE}")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise SettingsError(
            f"GIM_WEB_SECRET is {len(secret.encode())} bytes; at least {MIN_SECRET_BYTES} are "
            f"needed; {HOW_TO_MAKE}"
        )
    if len(set(secret)) < 8:
        raise SettingsError(f"GIM_WEB_SECRET repeats a few characters; {HOW_TO_MAKE}")
    # Entropy, not only length (issue 41): a run like 0123456789abcdef... or a keyboard row
    # is a guessable key however long. Random keys step by +-1 in ~3 % of adjacent pairs.
    steps = sum(abs(ord(a) - ord(b)) == 1 for a, b in zip(secret, secret[1:], strict=False))
    if steps * 2 > len(secret):
        raise SettingsError(f"GIM_WEB_SECRET is a sequence of characters; {HOW_TO_MAKE}")
    estimate = len(secret) * math.log2(len(set(secret)))
    if estimate < MIN_SECRET_BITS:
        raise SettingsError(
            f"GIM_WEB_SECRET has about {estimate:.0f} bits of entropy from {len(set(secret))} "
            f"distinct characters; at least {MIN_SECRET_BITS} are needed; {HOW_TO_MAKE}"
        )
    return secret


# ----- headers --------------------------------------------------------------------------------

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


#: The API docs page (Swagger UI, served from the vendored files) sets inline style
#: attributes; it alone relaxes style-src. Scripts stay 'self' only.
DOCS_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)


class SecurityHeaders:
    """Adds the headers above to every response (a route may set a stricter or page-specific
    Content-Security-Policy of its own, which is kept); ``Cache-Control: no-store`` to every
    response but the static files (pages and API answers may hold what a role may read);
    ``Strict-Transport-Security`` when ``hsts_seconds`` (GIM_WEB_HSTS_SECONDS, for an HTTPS
    deployment) is set."""

    def __init__(self, app: ASGIApp, hsts_seconds: int = 0) -> None:
        self.app = app
        self.extra: tuple[tuple[bytes, bytes], ...] = (
            ((b"strict-transport-security", f"max-age={hsts_seconds}".encode()),)
            if hsts_seconds
            else ()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if static or k.lower() != b"cache-control"
                ]
                own = {k.lower() for k, _ in headers}
                headers.extend((k, v) for k, v in SECURITY_HEADERS + self.extra if k not in own)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


# ----- login throttling --------------------------------------------------------------------


class Throttled(Exception):
    def __init__(self, retry_after: int, what: str) -> None:
        super().__init__(what)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Reservation:
    id: int  # the failure row reserved for this attempt
    delay: float  # seconds to wait before checking the password (a busy address)


class LoginThrottle:
    """Failed logins per account and client address (issue 41), counted in ``login_failure``
    over ``window``:

    - an account and address pair with ``limit`` failures is refused (429) until the oldest
      leaves the window;
    - an account with ``limit`` failures (from any addresses) is refused from addresses it
      never logged in from; an address it logged in from before (``login_success``) gets
      through, so strangers cannot lock a user out of their usual place;
    - an address with ``limit`` failures (any accounts: one proxy, many users) is slowed, not
      refused: each further attempt waits ``slow`` seconds per failure over the limit, at most
      ``slowest``, before its password is checked.

    The attempt is reserved before the password is hashed: :meth:`reserve` counts and inserts
    a failure row in one transaction under the account's advisory lock (``locks.LOGIN``), so
    N concurrent wrong passwords cannot all pass a count taken before any of them was
    recorded; a correct password deletes its reservation (:meth:`succeeded`).
    """

    def __init__(
        self,
        engine: Engine,
        limit: int = 5,
        window: timedelta = timedelta(minutes=1),
        slow: float = 0.5,
        slowest: float = 5.0,
    ) -> None:
        self.engine, self.limit, self.window = engine, limit, window
        self.slow, self.slowest = slow, slowest

    def reserve(self, account: str, client: str) -> Reservation:
        """Count, then reserve this attempt as a failure; :class:`Throttled` when refused."""
        account = account[:64]
        with self.engine.begin() as conn:
            locks.hold(conn, locks.LOGIN, table=account)
            since = conn.execute(sa.select(sa.func.now())).scalar_one() - self.window
            recent = login_failure.c.at > since

            def times(*where: Any) -> list[datetime]:
                return list(
                    conn.execute(
                        sa.select(login_failure.c.at)
                        .where(recent, *where)
                        .order_by(login_failure.c.at.desc())
                        .limit(self.limit)
                    ).scalars()
                )

            now = since + self.window
            pair = times(login_failure.c.account == account, login_failure.c.client == client)
            if len(pair) >= self.limit:
                raise self._refusal(pair, now, "this account from this address")
            known = conn.execute(
                sa.select(
                    sa.exists().where(
                        login_success.c.account == account, login_success.c.client == client
                    )
                )
            ).scalar_one()
            if not known:
                anywhere = times(login_failure.c.account == account)
                if len(anywhere) >= self.limit:
                    raise self._refusal(anywhere, now, "this account")
            from_address = conn.execute(
                sa.select(sa.func.count()).where(recent, login_failure.c.client == client)
            ).scalar_one()
            reserved = conn.execute(
                sa.insert(login_failure)
                .values(account=account, client=client)
                .returning(login_failure.c.id)
            ).scalar_one()
            # Keep the table small: failures older than a day say nothing about now.
            conn.execute(
                sa.delete(login_failure).where(
                    login_failure.c.at < sa.func.now() - sa.text("interval '1 day'")
                )
            )
        over = from_address - self.limit + 1
        return Reservation(reserved, min(self.slowest, self.slow * over) if over > 0 else 0.0)

    def _refusal(self, times: list[datetime], now: datetime, what: str) -> Throttled:
        retry = max(1, int((times[-1] + self.window - now).total_seconds()) + 1)
        return Throttled(retry, f"too many failed logins for {what}: try again in {retry} s")

    def succeeded(self, reservation: Reservation, account: str, client: str) -> None:
        """A correct password: its reservation is no failure; the address is known."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(login_failure).where(login_failure.c.id == reservation.id))
            conn.execute(
                insert(login_success)
                .values(account=account[:64], client=client)
                .on_conflict_do_update(
                    index_elements=["account", "client"], set_={"at": sa.func.now()}
                )
            )


# ----- bounded hashing -----------------------------------------------------------------------


class Busy(Exception):
    """No password-hashing slot became free in time."""


class HashSlots:
    def __init__(self, slots: int, wait: float = 5.0) -> None:
        self._semaphore = threading.BoundedSemaphore(slots)
        self.wait = wait

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._semaphore.acquire(timeout=self.wait):
            raise Busy("the server is busy checking passwords; try again in a few seconds")
        try:
            yield
        finally:
            self._semaphore.release()
