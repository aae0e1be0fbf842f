"""The local development stack of ``./dev``: where its servers live and the settings that point
at them (the "embedded defaults" of ``./dev up``)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from devtools.localstack import PostgresServer, RedisServer

ROOT = Path(__file__).resolve().parents[1]

#: Source databases of the local stack: one voice and one multimedia IDB (SPEC §0).
DEV_IDBS = ("idb_voice", "idb_mm")
DEV_FLOWER_USER = "admin"
DEV_FLOWER_PASSWORD = "gim"  # loopback-only development stack
DEV_WEB_USER = "admin"
DEV_WEB_PASSWORD = "gim-admin"  # the demo admin of `./dev up` (loopback only)


@dataclass(frozen=True)
class DevStack:
    local_dir: Path
    pg_port: int
    redis_port: int
    web_port: int = 8080
    smtp_port: int = 8025  # a local SMTP sink that prints the notification mails

    @classmethod
    def from_env(cls) -> DevStack:
        return cls(
            local_dir=Path(os.environ.get("GIM_LOCAL_DIR", ROOT / ".local")).resolve(),
            pg_port=int(os.environ.get("GIM_DEV_PG_PORT", "55432")),
            redis_port=int(os.environ.get("GIM_DEV_REDIS_PORT", "56379")),
            web_port=int(os.environ.get("GIM_DEV_WEB_PORT", "8080")),
            smtp_port=int(os.environ.get("GIM_DEV_SMTP_PORT", "8025")),
        )

    @property
    def postgres(self) -> PostgresServer:
        return PostgresServer(self.local_dir / "postgres", self.pg_port)

    @property
    def redis(self) -> RedisServer:
        return RedisServer(self.local_dir / "redis", self.redis_port)

    def environment(self) -> dict[str, str]:
        """``GIM_*`` variables of the local stack."""
        pg = self.postgres
        return {
            "GIM_DATABASE_URL": pg.url("gim"),
            "GIM_IDB_URLS": ",".join(pg.url(name) for name in DEV_IDBS),
            "GIM_REDIS_URL": self.redis.url(0),
            "GIM_FLOWER_USER": DEV_FLOWER_USER,
            "GIM_FLOWER_PASSWORD": DEV_FLOWER_PASSWORD,
            # Exports stay under .local/output: never aimed at the servers' data (issue 41).
            "GIM_OUTPUT_DIRECTORY": str(self.local_dir / "output"),
            "GIM_WEB_SECRET": self.web_secret(),
            "GIM_WEB_BASE_URL": f"http://127.0.0.1:{self.web_port}",
            "GIM_SMTP_HOST": "127.0.0.1",
            "GIM_SMTP_PORT": str(self.smtp_port),
        }

    def web_secret(self) -> str:
        """This checkout's own random session key, made once and kept in .local/web-secret
        (mode 0600): never a published one (the web app refuses those)."""
        path = self.local_dir / "web-secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(48) + "\n")
        return path.read_text().strip()

    def start(self) -> list[str]:
        """Start what is not running; return the names of the servers this call started."""
        started = []
        pg, redis = self.postgres, self.redis
        if not (pg.initialised() and pg.running()):
            pg.start()
            started.append("postgres")
        for name in DEV_IDBS:
            pg.create_database(name)
        if not redis.running():
            redis.start()
            started.append("redis")
        return started

    def stop(self, which: list[str] | None = None) -> None:
        if which is None or "redis" in which:
            self.redis.stop()
        if which is None or "postgres" in which:
            self.postgres.stop()
