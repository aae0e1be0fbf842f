"""How gim-tasks opens database sessions, independent of the driver layer: shared by the
SQLAlchemy engines (:mod:`gim_tasks.db.engine`) and the plain psycopg query of ``gim jobs``
(:mod:`gim_tasks.runtime.listing`), which must not import SQLAlchemy (issue 25)."""

from __future__ import annotations

import os
import socket

CONNECT_TIMEOUT_SECONDS = 5


def session_name(worker: str | None = None) -> str:
    """``application_name`` of this process's sessions: ``gim-tasks HOST:PID``."""
    return f"gim-tasks {worker or f'{socket.gethostname()}:{os.getpid()}'}"


def connection_problem(error: BaseException) -> str:
    """The first line of a driver error, without the driver's boilerplate."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__
