"""How gim-tasks opens database sessions, independent of the driver layer: shared by the
SQLAlchemy engines (:mod:`gim_tasks.db.engine`) and the plain psycopg query of ``gim jobs``
(:mod:`gim_tasks.runtime.listing`), which must not import SQLAlchemy (issue 25)."""

from __future__ import annotations

import os
import socket
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

CONNECT_TIMEOUT_SECONDS = 5
#: H1: a connection whose peer stopped answering (a network cut drops packets without a
#: reset) fails within bounded time instead of hanging until the cut heals: keepalive probes
#: on an idle connection (5 s idle, 3 probes 2 s apart), and ``tcp_user_timeout`` (ms) for
#: data sent and never acknowledged. A long query is not affected: the server's kernel
#: acknowledges the probes while it computes.
TCP_OPTIONS = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 15000,
}


def session_name(worker: str | None = None) -> str:
    """``application_name`` of this process's sessions: ``gim-tasks HOST:PID``."""
    return f"gim-tasks {worker or f'{socket.gethostname()}:{os.getpid()}'}"


def connection_problem(error: BaseException) -> str:
    """The first line of a driver error, without the driver's boilerplate."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


def libpq_url(url: str) -> str:
    """``url`` for libpq (plain psycopg). A multi-host URL is written the SQLAlchemy way,
    ``postgresql://USER@/DB?host=A:5432&host=B:5432&target_session_attrs=read-write`` (H1: a
    standby promoted after a failover is found by every process); libpq wants the hosts in the
    address part, ``postgresql://USER@A:5432,B:5432/DB?target_session_attrs=read-write``.
    Any other URL is returned as it is (with a ``+psycopg`` driver name dropped)."""
    url = url.replace("postgresql+psycopg://", "postgresql://", 1)
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    hosts = [value for key, value in query if key == "host"]
    if len(hosts) < 2 or parts.hostname:
        return url
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    rest = urlencode([(key, value) for key, value in query if key != "host"])
    return urlunsplit((parts.scheme, user + ",".join(hosts), parts.path, rest, parts.fragment))
