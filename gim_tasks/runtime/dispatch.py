"""Sending an admitted run to the workers (light: the command line and the web app send runs
without loading the beat or the job bodies)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gim_tasks.lifecycle import RunState
from gim_tasks.schedule.jobs import BY_NAME

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from gim_tasks.runtime.manager import Admission
    from gim_tasks.schedule.admission import Via
    from gim_tasks.settings import Settings


def send(app: Any, job: str, run_id: int) -> None:
    """Queue the task of an admitted run on its category's queue; the worker claims the run
    (only once: runtime/execution.claim, S11)."""
    app.send_task(job, kwargs={"run_id": run_id}, queue=BY_NAME[job].queue)


def request_and_send(
    engine: Engine,
    job: str,
    actor: str,
    params: str | dict[str, Any] | None = None,
    force: bool = False,
    *,
    via: Via,
    settings: Settings | None = None,
    app: Any = None,
) -> Admission:
    """A manual run on a worker (M1): admitted by the one decision
    (:func:`gim_tasks.runtime.manager.request_run`), sent when admitted as Running. ``app``
    defaults to the process's Celery app, imported only when a run is sent."""
    from gim_tasks.runtime.manager import request_run

    admission = request_run(engine, job, actor, params, force, via=via, settings=settings)
    if admission.state == RunState.RUNNING:
        if app is None:
            from gim_tasks.runtime.celery_app import app
        send(app, job, admission.run_id)
    return admission
