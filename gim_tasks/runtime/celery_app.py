"""The Celery application shared by beat, workers, Flower and ``celery call``.

Start processes with ``celery -A gim_tasks.runtime.celery_app ...``. The settings are read
once at import; a missing or malformed ``GIM_*`` variable ends the process with one line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
from celery import Celery
from kombu import Exchange, Queue

from gim_tasks import logs
from gim_tasks.errors import SettingsError
from gim_tasks.runtime.queues import QUEUES
from gim_tasks.schedule.jobs import BY_NAME, EXTRACT, EXTRACT_PART, JOBS
from gim_tasks.settings import Settings, get_settings


class UnknownTask(click.UsageError):
    """A task name that no gim-tasks worker runs (e.g. a typo in ``celery call``). A
    ``click`` usage error, so the ``celery`` command prints one line and exits 2."""


class GimCelery(Celery):
    def send_task(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Refuse names no worker would run: Celery would queue them, and the worker would
        drop them with "unregistered task" in its log, leaving the caller none the wiser."""
        if name not in self.tasks:
            known = ", ".join(sorted(n for n in self.tasks if not n.startswith("celery.")))
            raise UnknownTask(f"unknown job '{name}'; jobs are {known}")
        return super().send_task(name, *args, **kwargs)


def create_app(settings: Settings) -> Celery:
    from gim_tasks.monitor.notify import NOTIFY_TASK

    app = GimCelery("gim_tasks")
    app.conf.update(
        broker_url=settings.redis_url,
        redbeat_redis_url=settings.redis_url,
        task_queues=[Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
        task_default_queue="etl",
        # A run is acknowledged after it ends, so a worker that dies mid-run has its message
        # redelivered; the run's firing id (S11) keeps a redelivery from running it twice.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # Long runs must not be redelivered while they run; a redelivery after a worker died
        # is harmless anyway: the run is claimed once (S11, runtime/runs.py).
        broker_transport_options={"visibility_timeout": 12 * 3600},
        # Routes, not a `queue` task attribute (deprecated in Celery 5, gone in 6): they also
        # route `celery call` and send_task by name.
        task_routes={
            **{info.name: {"queue": info.queue} for info in JOBS},
            NOTIFY_TASK: {"queue": "notify"},
            # H2: an Extract part goes where Extract goes
            EXTRACT_PART: {"queue": BY_NAME[EXTRACT].queue},
        },
        # RedBeat's own Redis client options, set explicitly (empty: what RedBeat did when it
        # fell back to broker_transport_options, a fallback RedBeat 2.5 removes).
        redbeat_redis_options={},
        task_ignore_result=True,
    )
    from gim_tasks.runtime import tasks

    tasks.register(app)
    if logs.log_format() == "json":  # O6: beat and workers log JSON lines
        from celery.signals import after_setup_logger, after_setup_task_logger

        logs.json_warnings()
        logs.json_celery_messages()

        def json_lines(logger: logging.Logger, *args: Any, **kwargs: Any) -> None:
            logs.use_json(logger)

        after_setup_logger.connect(json_lines, weak=False)
        after_setup_task_logger.connect(json_lines, weak=False)
    return app


def _load() -> Celery:
    try:
        return create_app(get_settings())
    except SettingsError as error:
        print(f"gim-tasks: {error}", file=sys.stderr)
        raise SystemExit(2) from None


app = _load()
