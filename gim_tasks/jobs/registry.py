"""A job's body, from the catalogue's ``JobSpec.body`` (``module:function``), imported when a
run needs it: a process that only sends tasks or reads the catalogue loads no body."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from gim_tasks.errors import GimError
from gim_tasks.jobs.base import JobContext
from gim_tasks.schedule.jobs import BY_NAME, JOB_NAMES


def body_of(job: str) -> Callable[[JobContext], None]:
    spec = BY_NAME.get(job)
    if spec is None:
        raise GimError(f"unknown job '{job}'; jobs are {', '.join(JOB_NAMES)}")
    module, _, function = spec.body.partition(":")
    try:
        body: Callable[[JobContext], None] = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as error:
        raise GimError(f"{job}: its body {spec.body} cannot be loaded: {error}") from None
    return body
