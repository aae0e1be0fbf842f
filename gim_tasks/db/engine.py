"""Engines and connectivity errors that read as one line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gim_tasks.errors import ServiceUnavailable
from gim_tasks.settings import redact, sqlalchemy_url

CONNECT_TIMEOUT_SECONDS = 5


def make_engine(url: str, **kwargs: object) -> Engine:
    """An engine for ``url`` that fails fast (connect timeout) and survives server restarts
    (pre-ping)."""
    return sa.create_engine(
        sqlalchemy_url(url),
        pool_pre_ping=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS, "application_name": "gim-tasks"},
        **kwargs,
    )


def connection_problem(error: BaseException) -> str:
    """The first line of a driver error, without the driver's boilerplate."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


def display_url(engine: Engine) -> str:
    """The engine's URL as the user wrote it, password hidden."""
    url = engine.url.set(drivername="postgresql")
    return redact(url.render_as_string(hide_password=False))


@contextmanager
def connect(engine: Engine, what: str = "Info Mart") -> Iterator[sa.Connection]:
    """Connect, turning an unreachable server into :class:`ServiceUnavailable`."""
    try:
        conn = engine.connect()
    except sa.exc.OperationalError as error:
        raise ServiceUnavailable(
            f"{what} database {display_url(engine)} is unreachable: {connection_problem(error)}"
        ) from None
    with conn:
        yield conn
