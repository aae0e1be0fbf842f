"""Logs (SPEC O6): with ``GIM_LOG_FORMAT=json`` the beat, the workers and the web app log one
JSON object per line, with ``run_id``, ``job`` and ``firing_id`` where known, so a log pipeline
can follow a run without parsing text.

Where the fields come from: a worker pool process (and an in-process ``gim run --local``) runs
one run at a time, so the run being executed is process-wide state (:func:`running`), which
also covers the job body's own threads (parallel tables, the heartbeat); the beat passes a
firing's ids with each record (``extra=``). Lines are JSON objects with ``time`` (UTC, ISO
8601), ``level``, ``logger``, ``process``, ``message``, the run fields, and ``exception``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
FIELDS = ("run_id", "job", "firing_id")

#: The run this process executes now (one at a time: a prefork pool process, gim run --local).
_current: dict[str, Any] = {}


def log_format() -> str:
    """``GIM_LOG_FORMAT``: ``text`` (the default) or ``json``."""
    value = os.environ.get("GIM_LOG_FORMAT", "text").strip().lower() or "text"
    if value not in FORMATS:
        raise ValueError(f"GIM_LOG_FORMAT must be text or json, not '{value}'")
    return value


@contextmanager
def running(run_id: int, job: str) -> Iterator[None]:
    """Every record this process logs meanwhile carries the run's id and job."""
    previous = dict(_current)
    _current.update(run_id=run_id, job=job)
    try:
        yield
    finally:
        _current.clear()
        _current.update(previous)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is None:
                value = _current.get(key)
            if value is not None:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def _write_line(file: Any, logger: str, message: str) -> None:
    """A message that bypasses logging, written as the JSON line a WARNING record would be."""
    record = logging.LogRecord(logger, logging.WARNING, "", 0, message, None, None)
    file.write(JsonFormatter().format(record) + "\n")
    file.flush()


def json_warnings() -> None:
    """Python warnings (Celery's root-privileges warning, deprecations) as JSON lines on
    stderr too: they are printed before logging is set up, so they bypass its handlers."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        text = f"{category.__name__}: {message} ({filename}:{lineno})"
        _write_line(file or sys.stderr, "py.warnings", text)

    warnings.showwarning = show


def json_celery_messages() -> None:
    """Celery's worker writes a few messages straight to stdout or stderr, not through
    logging ("worker: Warm shutdown (MainProcess)", Ctrl-C hints): as JSON lines too."""
    from celery.apps import worker

    def say(message: str, f: Any = sys.__stderr__) -> None:
        _write_line(f, "celery.apps.worker", message)

    worker.safe_say = say


def use_json(logger: logging.Logger | None = None) -> None:
    """Give every handler of ``logger`` (the root logger by default) the JSON formatter."""
    for handler in (logger or logging.getLogger()).handlers:
        handler.setFormatter(JsonFormatter())


def uvicorn_config(level: str) -> dict[str, Any]:
    """uvicorn's ``log_config`` for JSON lines (the server's and the access log)."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "gim_tasks.logs.JsonFormatter"}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": {"level": level},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"level": level},
        },
    }
