"""Local PostgreSQL and Redis servers started from their binaries, for ``./dev`` and tests.

Both listen on 127.0.0.1 only and keep their data under one base directory. PostgreSQL refuses
to run as root, so when we are root it runs as the ``postgres`` system user (created by the
Debian package) and its directory is handed to that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gim_tasks.errors import LocalStackError

PG_SUPERUSER = "gim"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def in_netns(netns: str | None, argv: list[str]) -> list[str]:
    """``argv`` run inside network namespace ``netns`` (the network lab's hosts), if given."""
    return ["ip", "netns", "exec", netns, *argv] if netns else argv


def _wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise LocalStackError(f"{what} did not come up within {timeout:.0f} s")


def postgres_bindir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` live: ``GIM_PG_BINDIR``, the newest
    ``/usr/lib/postgresql/*/bin``, or ``PATH``."""
    if env := os.environ.get("GIM_PG_BINDIR"):
        return Path(env)
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise LocalStackError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
        "(Debian/Ubuntu: apt-get install postgresql) or set GIM_PG_BINDIR"
    )


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise LocalStackError(
            "redis-server not found: install it (Debian/Ubuntu: apt-get install redis-server)"
        )
    return found


@dataclass
class PostgresServer:
    """A PostgreSQL cluster in ``base/data`` listening on ``127.0.0.1:port``.

    ``fast=True`` turns off durability (fsync, full-page writes): for throw-away test clusters
    only.
    """

    base: Path
    port: int
    fast: bool = False
    #: Where it listens, and the network namespace it runs in (the network lab, issue 39).
    host: str = "127.0.0.1"
    netns: str | None = None
    _run_as: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.base = self.base.resolve()
        if os.geteuid() == 0:
            self._run_as = "postgres"
            try:
                pwd.getpwnam(self._run_as)
            except KeyError:
                raise LocalStackError(
                    "running as root, PostgreSQL must run as an unprivileged user, but user "
                    "'postgres' does not exist: apt-get install postgresql creates it"
                ) from None

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    def url(self, database: str = "gim") -> str:
        return f"postgresql://{PG_SUPERUSER}@{self.host}:{self.port}/{database}"

    def _cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(postgres_bindir() / args[0]), *args[1:]]
        if self._run_as:
            argv = ["runuser", "-u", self._run_as, "--", *argv]
        result = subprocess.run(in_netns(self.netns, argv), capture_output=True, text=True, cwd="/")
        if check and result.returncode != 0:
            raise LocalStackError(
                f"{args[0]} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-800:]}"
            )
        return result

    def _prepare_base(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            user = pwd.getpwnam(self._run_as)
            os.chown(self.base, user.pw_uid, user.pw_gid)
            # The unprivileged server must be able to reach its directory.
            probe = subprocess.run(
                ["runuser", "-u", self._run_as, "--", "test", "-w", str(self.base)],
                capture_output=True,
            )
            if probe.returncode != 0:
                raise LocalStackError(
                    f"user {self._run_as} cannot write {self.base}: a parent directory is not "
                    "searchable by it; move the checkout or set GIM_LOCAL_DIR to a directory "
                    "under /var/tmp"
                )

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        self._prepare_base()
        if self.initialised():
            return
        self._cmd(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            PG_SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8" if _has_c_utf8() else "--locale=C",
        )
        if self.host != "127.0.0.1":  # the network lab: its hosts' subnet, trusted as loopback
            network = ".".join(self.host.split(".")[:3]) + ".0/24"
            with (self.data_dir / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {network} trust\nhost replication all {network} trust\n")

    def running(self) -> bool:
        return self._cmd("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def start(self, create: bool = True) -> None:
        self.init()
        if self.running():
            return
        if port_open(self.port, self.host):
            raise LocalStackError(
                f"port {self.port} is taken by another program; stop it or choose another port"
            )
        options = [
            f"-p {self.port}",
            f"-c listen_addresses={self.host}",
            f"-k {self.base}",
            "-c max_connections=200",
        ]
        if self.fast:
            options += ["-c fsync=off", "-c full_page_writes=off", "-c synchronous_commit=off"]
        self._cmd(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.base / "server.log"),
            "-o",
            " ".join(options),
            "-w",
            "-t",
            "60",
            "start",
        )
        _wait_until(lambda: port_open(self.port, self.host), 30, f"PostgreSQL on port {self.port}")
        if create:  # a standby is read-only: its databases come from its primary
            self.create_database("gim")

    def stop(self) -> None:
        if self.initialised() and self.running():
            self._cmd("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def crash(self) -> None:
        """Stop at once, as if the host died (``immediate``: no checkpoint, sessions cut)."""
        self._cmd("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")

    def standby_of(self, primary: PostgresServer) -> None:
        """Become a streaming standby of ``primary`` (``pg_basebackup -R``), then make the
        primary wait for it at every commit (``synchronous_standby_names``): a failover to it
        loses no committed transaction (issue 39). ``--checkpoint=fast``: the backup starts at
        once instead of waiting for a spread checkpoint (minutes on a busy primary)."""
        self._prepare_base()
        self._cmd("pg_basebackup", "-h", primary.host, "-p", str(primary.port), "-U",
                  PG_SUPERUSER, "-D", str(self.data_dir), "-R", "-X", "stream",
                  "--checkpoint=fast")  # fmt: skip
        self.start(create=False)
        import psycopg

        with psycopg.connect(primary.url("postgres"), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")

            def streaming() -> bool:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
                ).fetchone()
                return bool(row and row[0])

            _wait_until(streaming, 30, "the standby streaming synchronously")

    def promote(self) -> None:
        self._cmd("pg_ctl", "-D", str(self.data_dir), "-w", "promote")

    def create_database(self, name: str, template: str | None = None) -> None:
        """Create database ``name`` (optionally from ``template``) unless it exists."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(statement)


@contextmanager
def scratch_postgres(
    prefix: str = "gim-scratch-", directory: str | None = None
) -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL (durability off) in a temporary directory (under ``directory``
    when given), for benchmarks; stopped and deleted on exit. ``server.base.parent`` is free
    scratch space."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=directory))
    base.chmod(0o755)  # the server may run as another user
    server = PostgresServer(base / "pg", free_port(), fast=True)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _has_c_utf8() -> bool:
    result = subprocess.run(["locale", "-a"], capture_output=True, text=True)
    return any(line.lower() in ("c.utf8", "c.utf-8") for line in result.stdout.splitlines())


@dataclass
class RedisServer:
    """A Redis server in ``base`` on ``127.0.0.1:port``, started as a daemon with a pid file.

    ``noeviction`` because RedBeat entries and run leases must never be dropped silently
    (PITFALLS: redbeat#291). ``persistent=False`` for throw-away test servers.
    """

    base: Path
    port: int
    persistent: bool = True
    databases: int = 64
    host: str = "127.0.0.1"
    netns: str | None = None

    @property
    def pidfile(self) -> Path:
        return self.base / "redis.pid"

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def _pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def running(self) -> bool:
        return self._pid() is not None

    def start(self) -> None:
        if self.running():
            return
        if port_open(self.port, self.host):
            raise LocalStackError(
                f"port {self.port} is taken by another program; stop it or choose another port"
            )
        self.base.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_binary(),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.base.resolve()),
            "--daemonize",
            "yes",
            "--pidfile",
            str(self.pidfile.resolve()),
            "--logfile",
            str((self.base / "redis.log").resolve()),
            "--databases",
            str(self.databases),
            "--maxmemory-policy",
            "noeviction",
            "--save",
            "",
        ]
        argv += ["--appendonly", "yes" if self.persistent else "no"]
        if self.host != "127.0.0.1":  # the network lab's hosts: reachable only inside the lab
            argv += ["--protected-mode", "no"]
        # Not under libfaketime (the shifted-clock tests preload it): redis-server's daemonize
        # hangs with it, and Redis needs no shifted clock (its expiries are relative).
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "FAKETIME")}
        result = subprocess.run(in_netns(self.netns, argv), capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise LocalStackError(
                f"redis-server failed: {(result.stderr or result.stdout).strip()}"
            )
        # The daemon writes its pid file a moment after it listens: wait for both, or a quick
        # stop() would find no pid and leave the server running.
        _wait_until(
            lambda: port_open(self.port, self.host) and self._pid() is not None,
            30,
            f"Redis on port {self.port}",
        )

    def stop(self) -> None:
        pid = self._pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        # Redis removes its pid file before it exits: wait for the process and the port.
        _wait_until(
            lambda: not _process_alive(pid) and not port_open(self.port, self.host),
            30,
            "Redis shutdown",
        )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours has exited already
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
