"""Sending an admitted run to the workers (light: the command line and the web app send runs
without loading the beat or the job bodies)."""

from __future__ import annotations

from typing import Any

from gim_tasks.schedule.jobs import BY_NAME


def send(app: Any, job: str, run_id: int) -> None:
    """Queue the task of an admitted run on its category's queue; the worker claims the run
    (only once: runtime/execution.claim, S11)."""
    app.send_task(job, kwargs={"run_id": run_id}, queue=BY_NAME[job].queue)
