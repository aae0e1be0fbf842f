"""JSON log lines (SPEC O6): fields, the run's context across threads, extra fields, errors."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from gim_tasks import logs


def _line(record: logging.LogRecord) -> dict[str, object]:
    text = logs.JsonFormatter().format(record)
    assert "\n" not in text  # one line per record, tracebacks included
    return json.loads(text)


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("gim_tasks.test", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return record


def test_a_line_carries_the_running_runs_fields_in_every_thread() -> None:
    assert "run_id" not in _line(_record("idle"))
    with logs.running(42, "Job_ExtractICON"):
        seen: list[dict[str, object]] = []
        worker = threading.Thread(target=lambda: seen.append(_line(_record("from a thread"))))
        worker.start()
        worker.join()
        line = _line(_record("héllo"))
    assert seen[0]["run_id"] == 42 and seen[0]["job"] == "Job_ExtractICON"
    assert line["message"] == "héllo" and line["level"] == "INFO"
    assert {"time", "logger", "process"} <= set(line)
    assert "run_id" not in _line(_record("after"))  # the context ends with the run


def test_extra_fields_win_and_exceptions_are_one_field() -> None:
    with logs.running(1, "Job_ExtractICON"):
        line = _line(_record("launch", firing_id="Job_MaintainGIM:x", job="Job_MaintainGIM"))
    assert (line["firing_id"], line["job"], line["run_id"]) == (
        "Job_MaintainGIM:x",
        "Job_MaintainGIM",
        1,
    )
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = _record("failed")
        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in str(_line(record)["exception"])


def test_an_unknown_format_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIM_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="text or json"):
        logs.log_format()
    monkeypatch.setenv("GIM_LOG_FORMAT", "JSON")
    assert logs.log_format() == "json"
