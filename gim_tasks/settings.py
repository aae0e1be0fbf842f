"""Process settings from ``GIM_*`` environment variables (and a ``.env`` file when present).

Settings say *where things are* (database and Redis URLs, SMTP, credentials); the operator's
job options (``[schedule]`` etc.) live in the database and are a different thing.

A missing or malformed variable stops the process with one line that names the variable and
shows an example value (see :func:`load_settings`).
"""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gim_tasks.errors import SettingsError

_PG_SCHEMES = ("postgresql", "postgresql+psycopg")


def _check_postgres_url(value: str) -> str:
    parts = urlsplit(value)
    # H1: several hosts, the SQLAlchemy way: postgresql://USER@/DB?host=A:5432&host=B:5432
    hosts = parts.hostname or "host=" in parts.query
    if parts.scheme not in _PG_SCHEMES or not hosts or not parts.path.strip("/"):
        raise ValueError(
            "must be a PostgreSQL URL postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME, or with "
            "several hosts postgresql://USER@/DBNAME?host=A:5432&host=B:5432"
            "&target_session_attrs=read-write"
        )
    return value


class Settings(BaseSettings):
    """Every ``GIM_*`` variable. Field descriptions and examples feed the error messages and
    ``.env.example``; keep them in step (a unit test checks)."""

    model_config = SettingsConfigDict(
        env_prefix="GIM_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(
        description="Info Mart PostgreSQL database (the project's own tables live here too).",
        examples=["postgresql://gim:secret@127.0.0.1:5432/gim"],
    )
    idb_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Source IDB databases, comma-separated (empty: no IDB configured yet).",
        examples=[
            "postgresql://gim:secret@127.0.0.1:5432/idb_voice,postgresql://gim:secret@127.0.0.1:5432/idb_mm"
        ],
    )
    redis_url: str = Field(
        description="Redis for the Celery broker, RedBeat schedule and beat lock (run exclusivity "
        "lives in PostgreSQL).",
        examples=["redis://:secret@127.0.0.1:6379/0"],
    )
    flower_user: str = Field(
        default="admin", description="Flower basic-auth user.", examples=["admin"]
    )
    flower_password: str = Field(
        default="",
        description="Flower basic-auth password (empty: Flower refuses to start outside ./dev).",
        examples=["change-me"],
    )
    smtp_host: str = Field(
        default="",
        description="SMTP server for job notifications "
        "(empty: notifications are recorded but not sent).",
        examples=["smtp.example.com"],
    )
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP port.", examples=[587])
    smtp_user: str = Field(
        default="", description="SMTP login (empty: no login).", examples=["gim-notify"]
    )
    smtp_password: str = Field(default="", description="SMTP password.", examples=["secret"])
    smtp_starttls: bool = Field(
        default=False, description="Use STARTTLS on the SMTP connection.", examples=["true"]
    )
    mail_from: str = Field(
        default="gim-tasks@localhost",
        description="Sender of notification mails.",
        examples=["gim-tasks@example.com"],
    )
    output_directory: Path = Field(
        default=Path("."),
        description="Base directory under which "
        "a relative [gim-export] output-directory option is "
        "resolved (default: the working directory).",
        examples=["/var/lib/gim"],
    )
    web_base_url: str = Field(
        default="http://127.0.0.1:8080",
        description="Public URL of the web app, used for links in mails.",
        examples=["https://gim.example.com"],
    )
    web_secret: str = Field(
        default="",
        description="Key that signs web session cookies, at least 32 random bytes, the same on "
        "every web replica; the web app refuses to start without one (`gim web-secret` makes "
        "one).",
        examples=["<output of gim web-secret>"],
    )
    web_session_idle_minutes: int = Field(
        default=60,
        ge=1,
        le=7 * 24 * 60,
        description="A web session unused for this many minutes ends.",
        examples=[60],
    )
    web_session_hours: int = Field(
        default=12,
        ge=1,
        le=30 * 24,
        description="A web session ends this many hours after login, however active.",
        examples=[12],
    )
    web_login_failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Failed logins per minute for an account from an address (then 429), for "
        "an account from addresses it never logged in from (then 429 there), and for an "
        "address over all accounts (then slowed, never refused).",
        examples=[5],
    )
    web_trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Reverse proxies (addresses or CIDR networks, comma-separated) whose "
        "X-Forwarded-For names the real client; from any other peer the header is ignored. "
        "Empty: the TCP peer is the client.",
        examples=["10.0.0.0/8,172.16.0.0/12"],
    )
    web_hsts_seconds: int = Field(
        default=0,
        ge=0,
        le=63072000,
        description="Strict-Transport-Security max-age in seconds for an HTTPS deployment "
        "(0: no HSTS header; browsers then keep to HTTPS for this long, e.g. 31536000).",
        examples=[31536000],
    )
    web_token_max_days: int = Field(
        default=0,
        ge=0,
        le=3650,
        description="The longest an API token may live, in days (gim token create "
        "--expires-days); 0: no limit, tokens without an expiry allowed.",
        examples=[90],
    )
    job_modules: str = Field(
        default="",
        description="Modules of site jobs (comma-separated import paths), each exposing "
        "JOBS = (JobSpec(...),); read from the environment of every process when the job "
        "catalogue is built (README: Adding a job).",
        examples=["acme_jobs.check_mart"],
    )
    web_hash_slots: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Password checks (argon2id, 64 MiB each) run at once per web process.",
        examples=[2],
    )
    watchdog_seconds: int = Field(
        default=15,
        ge=0,
        le=300,
        description="Seconds between the web app's watchdog passes (missed firings, a silent "
        "beat, failing jobs, stale data, alert delivery; O2); 0: this web process runs none "
        "(run `gim watchdog` instead).",
        examples=[15],
    )
    log_level: str = Field(
        default="INFO",
        pattern="^(DEBUG|INFO|WARNING|ERROR)$",
        description="Log level of every process: DEBUG, INFO, WARNING or ERROR.",
        examples=["INFO"],
    )
    log_format: str = Field(
        default="text",
        pattern="^(text|json)$",
        description="Log format of the beat, the workers and the web app: text, or json (one "
        "JSON object per line with run_id, job and firing_id where known; SPEC O6).",
        examples=["json"],
    )

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return _check_postgres_url(value)

    @field_validator("idb_urls", "web_trusted_proxies", mode="before")
    @classmethod
    def _split_comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("idb_urls")
    @classmethod
    def _idb_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            _check_postgres_url(url)
        return value

    @field_validator("web_trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        networks = []
        for entry in value:
            try:  # 10.1.2.3/8 means its network, 10.0.0.0/8
                networks.append(str(ipaddress.ip_network(entry, strict=False)))
            except ValueError:
                raise ValueError(
                    f"'{entry}' is not an IP address or CIDR network such as 10.0.0.0/8"
                ) from None
        return networks

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError("must be a Redis URL redis://[:PASSWORD@]HOST[:PORT]/DB")
        return value


def sqlalchemy_url(url: str) -> str:
    """The URL with the psycopg 3 driver named, as SQLAlchemy needs it."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def describe_errors(error: ValidationError) -> str:
    """One line per bad variable: name, what is wrong, an example value."""
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        info = Settings.model_fields.get(field)
        variable = "GIM_" + field.upper()
        example = info.examples[0] if info and info.examples else None
        if item["type"] == "missing":
            problem = "is not set"
        else:
            problem = "is invalid: " + str(item["msg"]).removeprefix("Value error, ")
        hint = f" (example: {variable}={example})" if example is not None else ""
        lines.append(f"{variable} {problem}{hint}")
    return "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, or raise :class:`SettingsError` with a one-line explanation."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(describe_errors(error)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return load_settings()
