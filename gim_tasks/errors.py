"""One error hierarchy with user-facing messages.

The CLI and the API print ``str(error)``; logs keep the traceback. Every message names what is
wrong and what is allowed or what to do next.
"""

from __future__ import annotations

from datetime import datetime


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
