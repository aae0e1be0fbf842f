"""SPEC O6: with GIM_LOG_FORMAT=json the beat, a worker and the web app write one JSON object
per line (every line of their logs parses), the run's lines carry its run_id and job, and the
web's access log is JSON too."""

from __future__ import annotations

import json
import urllib.request

from conftest import Stack

from devtools.localstack import free_port


def _lines(stack: Stack, name: str) -> list[dict[str, object]]:
    text = (stack.tmp / f"{name}.log").read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, name
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise AssertionError(f"{name}: not a JSON line: {line[:200]}") from error
    return parsed


def test_o6_every_line_of_beat_worker_and_web_is_json_with_the_run_fields(stack: Stack) -> None:
    stack.env["GIM_LOG_FORMAT"] = "json"
    stack.env["GIM_WEB_SECRET"] = "Z3xv0C8pOq1tY7n2mB5kR9wE4aL6sD0fH3jK8uP1qW2e"
    stack.worker()
    stack.start("beat", "beat")
    port = free_port()
    stack.start("web", "web", "--port", str(port))

    def web_up() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    stack.wait(web_up, 30, "gim web answers /healthz")
    result = stack.gim("run", "Job_ExtractICON", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = stack.runs("job = 'Job_ExtractICON' AND trigger = 'manual'")
    stack.wait(lambda: '"firing_id"' in (stack.tmp / "beat.log").read_text(), 30, "a firing")
    stack.stop()
    worker = _lines(stack, "w1")
    mine = [line for line in worker if line.get("run_id") == run.id]
    assert mine and all(line["job"] == "Job_ExtractICON" for line in mine)
    assert any(line["logger"] == "gim_tasks.jobs.extract" for line in mine)  # the body's line
    assert {"time", "level", "logger", "process", "message"} <= set(worker[0])
    # The beat's decisions name the firing (the first tick fires the latest statistics slot).
    firings = [line for line in _lines(stack, "beat") if "firing_id" in line]
    assert firings and all(str(line["firing_id"]).startswith(f"{line['job']}:") for line in firings)
    web = _lines(stack, "web")
    assert any("GET /healthz" in str(line["message"]) for line in web)  # the access log
