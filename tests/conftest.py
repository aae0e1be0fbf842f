"""Real servers for the tests: one PostgreSQL and one Redis per test session, started from
their binaries on free loopback ports in a private directory (so ``./dev test`` can run while
``./dev up`` runs). Each test gets a fresh database cloned from a migrated template and its own
Redis database number.

A missing server binary skips the tests that need it locally, but fails them in CI (CI=true).
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from email.policy import default
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis as redis_lib
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from devtools.localstack import PostgresServer, RedisServer, free_port
from devtools.processes import ProcessGroup, worker_args
from gim_tasks.db import migrate
from gim_tasks.db.engine import make_engine
from gim_tasks.errors import LocalStackError
from gim_tasks.idb.generator import generate
from gim_tasks.idb.schema import init_idb
from gim_tasks.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_DB = "gim_template"


@dataclass
class Servers:
    postgres: PostgresServer
    redis: RedisServer
    base: Path


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"test servers unavailable in CI: {reason}")
    pytest.skip(f"test servers unavailable: {reason}")


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    base = Path(tempfile.mkdtemp(prefix="gim-test-"))
    base.chmod(0o755)  # PostgreSQL may run as another user (we may be root)
    postgres = PostgresServer(base / "pg", free_port(), fast=True)
    redis = RedisServer(base / "redis", free_port(), persistent=False)
    try:
        postgres.start()
        redis.start()
        postgres.create_database(TEMPLATE_DB)
        engine = make_engine(postgres.url(TEMPLATE_DB))
        migrate.upgrade(engine)
        engine.dispose()  # a template must have no open session to be cloned
    except LocalStackError as error:
        postgres.stop()
        redis.stop()
        shutil.rmtree(base, ignore_errors=True)
        _unavailable(str(error))
    try:
        yield Servers(postgres, redis, base)
    finally:
        redis.stop()
        postgres.stop()
        shutil.rmtree(base, ignore_errors=True)


_db_numbers = itertools.count(1)


def _admin(servers: Servers) -> psycopg.Connection:
    return psycopg.connect(servers.postgres.url("postgres"), autocommit=True)


def insert_run(conn: sa.Connection, **values: Any) -> int:
    """A ``job_run`` row with exactly the given fields (tests set states, times and counts
    directly; the product records runs through ``gim_tasks.runtime.runs.record``); its id."""
    from gim_tasks.db.tables import job_run

    return int(
        conn.execute(sa.insert(job_run).values(**values).returning(job_run.c.id)).scalar_one()
    )


@pytest.fixture
def make_database(servers: Servers) -> Iterator[object]:
    """A factory of fresh databases: ``make_database(migrated=True) -> url``. Dropped after the
    test. Migrated ones are cloned from the template (fast: a file copy, no migrations)."""
    created: list[str] = []

    def create(migrated: bool = True) -> str:
        name = f"test_{os.getpid()}_{next(_db_numbers)}"
        template = TEMPLATE_DB if migrated else "template0"
        with _admin(servers) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        created.append(name)
        return servers.postgres.url(name)

    yield create
    with _admin(servers) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(make_database: object) -> str:
    """A fresh database at the head migration."""
    return make_database()  # type: ignore[operator]


@pytest.fixture
def redis_url(servers: Servers) -> str:
    """A Redis database of this test's own (emptied first); the server is the session's."""
    number = next(_db_numbers) % (servers.redis.databases - 1) + 1
    url = servers.redis.url(number)
    client = redis_lib.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def gim_env(
    monkeypatch: pytest.MonkeyPatch, database_url: str, redis_url: str, tmp_path: Path
) -> dict[str, str]:
    """``GIM_*`` variables pointing at this test's database and Redis, set in the process
    environment (and returned, for subprocesses)."""
    env = {
        "GIM_DATABASE_URL": database_url,
        "GIM_REDIS_URL": redis_url,
        "GIM_IDB_URLS": "",
        "GIM_OUTPUT_DIRECTORY": str(tmp_path / "output"),
        "GIM_WEB_SECRET": secrets.token_urlsafe(48),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # no stray .env from the checkout
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


@pytest.fixture
def web_role_url(gim_env: dict[str, str]) -> str:
    """The URL of this test's database as a least-privilege web role (``gim db grant-web``),
    as ./dev up and production run the web app. Roles are cluster-wide: one per database."""
    from gim_tasks.db.roles import grant_web

    owner_url = gim_env["GIM_DATABASE_URL"]
    role = "web_" + owner_url.rsplit("/", 1)[1]
    owner = make_engine(owner_url)
    with owner.begin() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
    grant_web(owner, role)
    owner.dispose()
    return owner_url.replace("postgresql://gim@", f"postgresql://{role}@", 1)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No ``GIM_*`` variable and no ``.env`` file in sight."""
    for key in list(os.environ):
        if key.startswith("GIM_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


# --- a stack of real processes (workers, beats, web) for system tests -----------------

BIN = Path(sys.executable).parent
GIM, CELERY = str(BIN / "gim"), str(BIN / "celery")


class Stack:
    """Real gim processes for a system test, on the shared harness (devtools/processes.py):
    each in its own process group, logging to TMP/NAME.log, all stopped after the test."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env, self.tmp = env, tmp
        self.group = ProcessGroup(env, log_dir=tmp, grace=20.0)
        self.engine = make_engine(env["GIM_DATABASE_URL"])

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        return self.group.start(name, [GIM, *args])

    def worker(self, name: str = "w1", concurrency: int = 2) -> subprocess.Popen[bytes]:
        return self.start(name, *worker_args(f"{name}-{os.getpid()}", concurrency))

    def gim(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [GIM, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def runs(self, where: str = "true") -> list[sa.Row]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(f"SELECT * FROM job_run WHERE {where} ORDER BY id")))

    def wait(self, predicate: Callable[[], bool], limit: float, what: str) -> None:
        self.group.wait_until(predicate, limit, what)

    def stop(self) -> None:
        self.group.stop_all()
        self.engine.dispose()


@pytest.fixture
def stack(
    gim_env: dict[str, str], make_database: Callable[..., str], tmp_path: Path
) -> Iterator[Stack]:
    idb = make_database(migrated=False)
    init_idb(make_engine(idb))
    with psycopg.connect(idb, autocommit=True) as conn:
        generate(conn, datetime(2026, 11, 23, tzinfo=UTC), 6, agents=30, queues=5, rate=3000)
    env = {**os.environ, **gim_env, "GIM_IDB_URLS": idb, "GIM_LOG_LEVEL": "INFO"}
    running = Stack(env, tmp_path)
    try:
        yield running
    finally:
        running.stop()


# --- a real SMTP server (aiosmtpd) that keeps what it receives -----------------------------


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=default))
        )
        return "250 OK"


class Smtp:
    def __init__(self, port: int) -> None:
        self.port, self.inbox, self.controller = port, Inbox(), None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp(gim_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Smtp]:
    """A real SMTP server (aiosmtpd) on a free port, the settings pointing at it."""
    server = Smtp(free_port())
    monkeypatch.setenv("GIM_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("GIM_SMTP_PORT", str(server.port))
    get_settings.cache_clear()
    server.start()
    yield server
    server.stop()
