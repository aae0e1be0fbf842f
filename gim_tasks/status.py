"""``gim status``: is every server the system needs reachable, and is the schema current?"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import redis
import sqlalchemy as sa

from gim_tasks.db.engine import connection_problem, make_engine
from gim_tasks.db.migrate import schema_state
from gim_tasks.errors import GimError
from gim_tasks.settings import Settings, redact

REDIS_TIMEOUT_SECONDS = 3


@dataclass(frozen=True)
class Check:
    item: str  # what was checked ("Info Mart", "IDB 1", "Redis", "schema")
    target: str  # where (URL without password)
    ok: bool
    detail: str  # version when up, reason when down
    warning: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def check_postgres(item: str, url: str) -> Check:
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.text("SHOW server_version")).scalar_one()
        return Check(item, redact(url), True, f"PostgreSQL {version.split()[0]}")
    except sa.exc.SQLAlchemyError as error:
        return Check(item, redact(url), False, connection_problem(error))
    finally:
        engine.dispose()


def check_schema(url: str) -> Check:
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        state = schema_state(engine)
        return Check("schema", redact(url), state.at_head, state.describe())
    except (GimError, sa.exc.SQLAlchemyError) as error:
        return Check("schema", redact(url), False, f"not checked: {connection_problem(error)}")
    finally:
        engine.dispose()


def check_redis(url: str) -> Check:
    client = redis.Redis.from_url(
        url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
    )
    try:
        info = client.info("server")
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "unknown")
    except redis.RedisError as error:
        return Check("Redis", redact(url), False, str(error).splitlines()[0])
    finally:
        client.close()
    warning = None
    if policy != "noeviction":
        # RedBeat entries and run leases must never be evicted (PITFALLS, redbeat#291).
        warning = f"maxmemory-policy is {policy}; set it to noeviction"
    return Check("Redis", redact(url), True, f"Redis {info.get('redis_version')}", warning)


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in display order. Never raises for a down server: it reports it."""
    mart = check_postgres("Info Mart", settings.database_url)
    checks = [mart]
    checks.append(
        check_schema(settings.database_url)
        if mart.ok
        else Check("schema", mart.target, False, "not checked: Info Mart is down")
    )
    for number, url in enumerate(settings.idb_urls, start=1):
        checks.append(check_postgres(f"IDB {number}", url))
    checks.append(check_redis(settings.redis_url))
    return checks
