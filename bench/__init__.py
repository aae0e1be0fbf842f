"""Benchmarks (./dev bench NAME) and what they share."""

from __future__ import annotations

import shutil
import statistics
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any


@contextmanager
def servers() -> Iterator[tuple[Path, Any, Any]]:
    """A throw-away PostgreSQL and Redis on free ports: (scratch directory, PostgresServer,
    RedisServer); both stopped and the directory removed afterwards."""
    from devtools.localstack import PostgresServer, RedisServer, free_port

    base = Path(tempfile.mkdtemp(prefix="gim-bench-"))
    base.chmod(0o755)  # PostgreSQL may run as another user (we may be root)
    pg = PostgresServer(base / "pg", free_port(), fast=True)
    rd = RedisServer(base / "redis", free_port(), persistent=False)
    pg.start()
    rd.start()
    try:
        yield base, pg, rd
    finally:
        rd.stop()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def web_servers() -> Iterator[Any]:
    """Throw-away servers, the Info Mart migrated, and the process settings pointing at them
    (with a random web secret) for an in-process web app; yields the Info Mart's engine."""
    import os
    import secrets

    from gim_tasks.db import migrate
    from gim_tasks.db.engine import make_engine
    from gim_tasks.settings import get_settings

    with servers() as (_base, pg, rd):
        url = pg.url("gim")
        engine = make_engine(url)
        migrate.upgrade(engine)
        os.environ.update(
            {
                "GIM_DATABASE_URL": url,
                "GIM_REDIS_URL": rd.url(0),
                "GIM_WEB_SECRET": secrets.token_urlsafe(48),
            }
        )
        get_settings.cache_clear()
        yield engine


def admin_client(engine: Any) -> Any:
    """An in-process client of the web app, logged in as an admin (a session, as a browser)."""
    import re

    from fastapi.testclient import TestClient

    from gim_tasks.settings import get_settings
    from gim_tasks.web import auth
    from gim_tasks.web.app import create_app

    auth.add_user(engine, "ada", "admin", "bench-password-0", "bench")
    client = TestClient(create_app(get_settings(), engine), base_url="http://testserver")
    form = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    client.post("/login", data={"name": "ada", "password": "bench-password-0", "csrf": csrf})
    return client


def median_per_history(
    marts: dict[int, tuple[str, str]],
    samples: int,
    start: datetime,
    traffic: dict[str, int],
    measure: Callable[[str, str], float],
) -> dict[int, float]:
    """For each history (days -> (IDB URL, Info Mart URL)): write one new hour of traffic
    (``generate`` keywords ``traffic``) right after the history, ``measure(idb, mart)`` the
    work it causes; ``samples`` hours, alternating between the histories so that machine drift
    hits all alike. Returns the median seconds per history."""
    import psycopg

    from gim_tasks.idb.generator import generate

    seconds: dict[int, list[float]] = {days: [] for days in marts}
    for hour in range(samples):
        for days, (idb, mart) in marts.items():
            with psycopg.connect(idb, autocommit=True) as conn:
                generate(
                    conn, start + timedelta(days=days, hours=8 + hour), 1, seed=99 + hour, **traffic
                )
            seconds[days].append(measure(idb, mart))
    return {days: statistics.median(values) for days, values in seconds.items()}


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def timed_beat(engine: Any, ledger: bool = True) -> Any:
    """The beat's scheduler without its process (``gim_tick`` called by hand, to time it),
    against ``engine`` and the settings' Redis, warmed up: the plan written, the check cached."""
    from datetime import UTC
    from datetime import datetime as clock

    import redis

    from gim_tasks.runtime.beat import GimScheduler
    from gim_tasks.runtime.celery_app import create_app
    from gim_tasks.settings import get_settings

    settings = get_settings()
    beat = GimScheduler.__new__(GimScheduler)
    beat._engine, beat._redis = engine, redis.Redis.from_url(settings.redis_url)
    beat.app = create_app(settings)
    beat.LEDGER = ledger
    beat.gim_tick(clock.now(UTC))
    return beat
