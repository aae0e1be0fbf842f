"""PostgreSQL keeps the tests' own clock (issue 32): under libfaketime
(``tests/system/test_shifted_clock.py``) the PostgreSQL server the shifted test run starts runs
shifted too, so rows the tests stamp with ``now()`` and values they compute from Python's clock
agree. Redis is started outside libfaketime (its daemonize hangs under it) and keeps the real
clock: nothing of ours reads Redis's clock (its expiries are relative), which this test states
by reading it."""

from __future__ import annotations

import os
import time

import pytest
import redis
import sqlalchemy as sa

from gim_tasks.db.engine import make_engine


@pytest.mark.date_sensitive
def test_postgres_reads_the_same_clock_as_the_tests(database_url: str, redis_url: str) -> None:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        postgres = conn.execute(sa.text("SELECT extract(epoch FROM clock_timestamp())")).scalar()
    mine = time.time()
    assert abs(float(postgres) - mine) < 60, (postgres, mine)
    seconds, _ = redis.Redis.from_url(redis_url).time()
    shift = abs(seconds - mine)
    assert shift < 60 or "FAKETIME" in os.environ, (seconds, mine)  # real time, shifted or not
    engine.dispose()
