"""The beat's tick on the test's PostgreSQL and Redis with an injected clock (tests of the
firing engine as carried out, and of the ledger)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis
import sqlalchemy as sa

from gim_tasks.db.engine import make_engine
from gim_tasks.options import store
from gim_tasks.runtime.beat import CURSORS_KEY, GimScheduler
from gim_tasks.schedule.localtime import resolve, zone
from gim_tasks.settings import get_settings

TZ = zone("Europe/Berlin")


def at(text: str) -> datetime:
    return resolve(datetime.strptime(text, "%Y-%m-%d %H:%M:%S"), TZ)


class Beat:
    """The scheduler's tick logic on the test's servers, with an injected clock."""

    def __init__(self, env: dict[str, str]) -> None:
        from gim_tasks.runtime.celery_app import create_app  # reads the settings on import

        settings = get_settings()
        self.engine = make_engine(env["GIM_DATABASE_URL"])
        self.redis = redis.Redis.from_url(env["GIM_REDIS_URL"])
        self.scheduler = GimScheduler.__new__(GimScheduler)
        self.scheduler._engine = self.engine
        self.scheduler._redis = self.redis
        self.scheduler.app = create_app(settings)
        for option, value in (("timezone", "Europe/Berlin"), ("run-update-stats", "true")):
            store.set_option(self.engine, "schedule", option, value, "test")

    def tick(self, when: str) -> None:
        self.scheduler.gim_tick(at(when))

    def cursors(self, when: str, *jobs: str) -> None:
        names = jobs or ("Job_ExtractICON", "Job_MaintainGIM", "Job_UpdateStats")
        self.redis.hset(CURSORS_KEY, mapping={job: at(when).isoformat() for job in names})

    def run(self, job: str, trigger: str, state: str = "Running") -> int:
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "INSERT INTO job_run (job, trigger, actor, state, started_at, "
                        "heartbeat_at, fencing_token) VALUES (:j, :t, 'x', :s, now(), "
                        "now() + interval '1 day', 1) "
                        "RETURNING id"
                    ),
                    {"j": job, "t": trigger, "s": state},
                ).scalar_one()
            )

    def end(self, run_id: int, state: str = "Completed") -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE job_run SET state = :s, ended_at = now() WHERE id = :i"),
                {"s": state, "i": run_id},
            )

    def rows(self, job: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.text("SELECT * FROM job_run WHERE job = :j ORDER BY id"), {"j": job}
                )
            )

    def queued(self, queue: str) -> int:
        return int(self.redis.llen(queue))
