"""One error hierarchy with user-facing messages.

The CLI and the API print ``str(error)``; logs keep the traceback. Every message names what is
wrong and what is allowed or what to do next.
"""

from __future__ import annotations

from datetime import date, datetime


class GimError(Exception):
    """Base class of every error the user should read as one line."""

    exit_code = 1


class SettingsError(GimError):
    """An environment setting (``GIM_*``) is missing or malformed."""

    exit_code = 2


class ServiceUnavailable(GimError):
    """A server the command needs (PostgreSQL, Redis) cannot be reached."""

    exit_code = 3


class SchemaError(GimError):
    """The database schema is not at the migration this code expects."""

    exit_code = 4


class LocalStackError(GimError):
    """The local development servers could not be set up or started."""


class NotFound(GimError):
    """The object named (a run, a subscription, a user) does not exist (the API's 404)."""


class Conflict(GimError):
    """The request is well formed but the object's current state refuses it (the API's 409):
    stopping a run that already ended, subscribing a user without an e-mail address."""


def aware_instant(text: str, what: str) -> datetime:
    """An ISO-8601 instant with its UTC offset (``what`` names it in the error: an option, a
    parameter), or a :class:`GimError` saying which part is missing."""
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise GimError(
            f"{what} '{text}' is not an ISO-8601 instant, e.g. 2026-11-23T00:00+01:00"
        ) from None
    if instant.tzinfo is None:
        raise GimError(f"{what} '{text}' has no UTC offset; add one, e.g. {text}+00:00")
    return instant


def local_date(text: str, what: str) -> date:
    """A local day ``YYYY-MM-DD`` (``what`` names it in the error), or a :class:`GimError`."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise GimError(f"{what} '{text}' is not a day YYYY-MM-DD, e.g. 2026-11-23") from None


class TransientError(GimError):
    """A failure a retry may cure (L3): raise it (or a subclass) from a job body for a
    condition that passes by itself. Besides it, :func:`is_transient` counts a lost
    connection to PostgreSQL (the mart or an IDB) or Redis and a lock wait timeout; never a
    configuration, parameter or data error (every other :class:`GimError`, a constraint
    violation, bad data)."""


#: PostgreSQL SQLSTATE classes and codes a retry may cure: connection exceptions (08), an
#: operator intervention such as a shutdown or a terminated backend (57P01-57P05: not 57014,
#: a statement cancelled on purpose), lock not available (55P03, a lock wait timeout), a
#: serialization failure or deadlock (40001, 40P01).
TRANSIENT_SQLSTATES = ("08", "57P01", "57P02", "57P03", "57P04", "57P05", "55P03", "40001", "40P01")


def is_transient(error: BaseException) -> bool:
    """L3: is ``error`` one a retry may cure? (See :class:`TransientError`.) Reads the cause
    chain: SQLAlchemy wraps the driver's error."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TransientError):
            return True
        if isinstance(current, GimError):
            return False
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(state, str) and state.startswith(TRANSIENT_SQLSTATES):
            return True
        if getattr(current, "connection_invalidated", False):
            return True
        kind = type(current)
        names = {f"{k.__module__}.{k.__qualname__}" for k in kind.__mro__}
        if names & {
            "redis.exceptions.ConnectionError",
            "redis.exceptions.TimeoutError",
            "psycopg.OperationalError",
        } and not (isinstance(state, str) and not state.startswith(TRANSIENT_SQLSTATES)):
            return True  # a lost connection (no SQLSTATE: the server is gone)
        current = current.__cause__ or getattr(current, "orig", None)
    return False
