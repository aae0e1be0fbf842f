"""Engines and connectivity errors that read as one line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gim_tasks.db.sessions import (
    CONNECT_TIMEOUT_SECONDS,
    TCP_OPTIONS,
    connection_problem,
    session_name,
)
from gim_tasks.errors import ServiceUnavailable
from gim_tasks.settings import redact, sqlalchemy_url


def idle_transaction_timeout_ms() -> int:
    """How long a session may sit idle inside a transaction before PostgreSQL ends it: twice
    the run lease (GIM_LEASE_SECONDS, 30 s), at least 10 s. A worker process that is paused
    (SIGSTOP, a frozen VM) or cut off mid-transaction keeps its row locks, such as the
    extraction marks, and would block every later run of its job forever; PostgreSQL ends such
    a session once the run has been declared lost, which releases them. No job leaves a
    transaction idle for long: every statement streams or computes."""
    lease = float(os.environ.get("GIM_LEASE_SECONDS", "30"))
    return int(max(2 * lease, 10) * 1000)


def make_engine(url: str, **kwargs: object) -> Engine:
    """An engine for ``url`` that fails fast (connect timeout), survives server restarts
    (pre-ping) and never lets an abandoned transaction hold its locks for long."""
    engine = sa.create_engine(
        sqlalchemy_url(url),
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            **TCP_OPTIONS,
            "options": f"-c idle_in_transaction_session_timeout={idle_transaction_timeout_ms()}",
        },
        **kwargs,
    )

    @sa.event.listens_for(engine, "do_connect")
    def _name_session(dialect: object, conn_rec: object, cargs: object, cparams: dict) -> None:
        # Decided at connect time, in the process that connects (pool processes fork): the
        # beat ends the sessions of a process whose run it declared lost (runtime/beat.py).
        cparams["application_name"] = session_name()

    return engine


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
