"""The jobs' Celery tasks, named exactly as the jobs (SPEC §1), and the Extract part task (H2).

A task carries a ``run_id`` when the beat or the manager sent it: it claims that run and
executes it (only a run already admitted and waiting as Scheduled can be claimed). Without one
(``celery -A gim_tasks.runtime.celery_app call Job_ExtractICON``, or a message sent from
Flower) it is a manual start: it goes through the same admission as ``gim run`` (M0-M7) with
the actor the message names (``actor``), else ``celery (unnamed)``, audited on the ``celery``
channel (P6), and runs only if admitted as Running. Such a message can never
carry ``force``: forcing is an admin's action through the CLI or the API.
"""

from __future__ import annotations

import logging
import re
from typing import Any, NoReturn

from celery import Celery

from gim_tasks.lifecycle import Channel, RunState
from gim_tasks.schedule.jobs import AGGREGATE, BY_NAME, EXTRACT, EXTRACT_PART, JOBS
from gim_tasks.settings import get_settings

# The job bodies and the execution machinery are imported when a task runs, not when the
# app is made: a process that only sends tasks (`gim run`, the web app) never loads them.

log = logging.getLogger("gim_tasks.runtime.tasks")

_engines: dict[str, Any] = {}


def _engine() -> Any:
    from gim_tasks.db.engine import make_engine

    url = get_settings().database_url
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


def run_job(
    job: str,
    task_id: str | None,
    run_id: int | None = None,
    params: str | dict[str, Any] | None = None,
    force: bool = False,
    actor: str | None = None,
) -> dict[str, Any]:
    import sqlalchemy as sa

    from gim_tasks.jobs.registry import body_of
    from gim_tasks.monitor import audit
    from gim_tasks.runtime.manager import InvalidRequest, request_run
    from gim_tasks.runtime.runs import claim, run_claimed
    from gim_tasks.schedule.admission import Via

    engine = _engine()
    if run_id is None and force:
        # A raw message (celery call, Flower) carries no identity: forcing stays an admin's
        # action through `gim run --force` or the API, recorded with the admin's name (M7).
        reason = (
            "force is refused in a task message: an admin forces a run with "
            "`gim run JOB --force` or the API (M7)"
        )
        log.warning("celery call %s refused: %s", job, reason)
        return {"run_id": None, "state": RunState.REJECTED, "reason": reason}
    if run_id is None:
        try:
            # P6: a raw message is the celery channel; its sender is who it names, if anyone.
            with audit.origin(Channel.CELERY):
                admission = request_run(
                    engine,
                    job,
                    actor or UNNAMED,
                    params=params,
                    force=force,
                    via=Via.CELERY_CALL,
                )
        except InvalidRequest as error:  # nothing recorded; the caller reads why
            log.warning("celery call %s refused: %s", job, error)
            return {"run_id": None, "state": RunState.REJECTED, "reason": str(error)}
        log.info(
            "celery call %s: run %s %s %s",
            job,
            admission.run_id,
            admission.state,
            admission.reason or "",
        )
        if admission.state != RunState.RUNNING:
            return {
                "run_id": admission.run_id,
                "state": admission.state,
                "reason": admission.reason,
            }
        run_id = admission.run_id
    try:
        token = claim(engine, run_id, task_id)
    except sa.exc.OperationalError as error:
        _give_back(f"run {run_id} of {job}", error)
    if token is None:
        log.info(
            "run %s of %s is not claimable (already started, cancelled or rejected): "
            "nothing to do (S11)",
            run_id,
            job,
        )
        return {"run_id": run_id, "state": "not claimable"}
    state, _, _ = run_claimed(
        engine, run_id, token, body_of(job), get_settings().idb_urls, send_part=_send_part
    )
    _announce(run_id)
    if BY_NAME[job].fires == "backfill":
        _next_items()
    return {"run_id": run_id, "state": state}


def _give_back(what: str, error: BaseException) -> NoReturn:
    """H1: this worker cannot reach the database to claim ``what`` (a partition, a failover):
    give the message back to the queue for a worker that can, instead of acknowledging it
    unclaimed."""
    from celery.exceptions import Reject

    from gim_tasks.db.sessions import connection_problem

    log.warning("%s: cannot claim it from here (%s): requeued", what, connection_problem(error))
    raise Reject(f"database unreachable: {connection_problem(error)}", requeue=True) from None


def _send_part(run_id: int, idb: str) -> None:
    """H2: an Extract part to any worker of the etl queue."""
    from gim_tasks.runtime.celery_app import app

    app.send_task(EXTRACT_PART, kwargs={"run_id": run_id, "idb": idb}, queue=BY_NAME[EXTRACT].queue)


def run_part(run_id: int, idb: str) -> dict[str, Any]:
    """H2: claim and run one part of a fanned-out Extract run. Only a part its run recorded
    and nobody holds can be claimed: a message cannot start anything (S11 for parts)."""
    import sqlalchemy as sa

    from gim_tasks import logs
    from gim_tasks.jobs.base import JobContext
    from gim_tasks.jobs.extract import extract_idb, idb_name
    from gim_tasks.options import store
    from gim_tasks.runtime import parts
    from gim_tasks.runtime.runs import HEARTBEAT_SECONDS, worker_name

    engine, settings = _engine(), get_settings()
    try:
        part = parts.claim(engine, run_id, worker_name(), idb)
    except sa.exc.OperationalError as error:
        _give_back(f"part {idb} of run {run_id}", error)
    if part is None:
        return {"run_id": run_id, "idb": idb, "state": "not claimable"}
    url = next((u for u in settings.idb_urls if idb_name(u) == idb), None)

    def body(ctx: JobContext, url: str) -> int:
        if not url:
            raise parts.PartFailed(
                f"IDB {idb} is not in GIM_IDB_URLS of worker {worker_name()}: give every "
                "worker of the etl queue the same IDBs"
            )
        return extract_idb(ctx, url)

    with engine.connect() as conn:
        options = store.load_options(conn)
    with logs.running(run_id, EXTRACT):
        state = parts.execute(
            engine, part, url or "", body, options, settings.output_directory, HEARTBEAT_SECONDS
        )
    if state == parts.WAITING:  # given back at a warm shutdown: another worker continues
        _send_part(run_id, idb)
    return {"run_id": run_id, "idb": idb, "state": state}


def part_task(*args: Any, **kwargs: Any) -> dict[str, Any]:
    run_id, idb = kwargs.get("run_id"), kwargs.get("idb")
    if (
        args
        or set(kwargs) != {"run_id", "idb"}
        or isinstance(run_id, bool)
        or not (isinstance(run_id, int) and isinstance(idb, str))
    ):
        reason = "an Extract part takes exactly run_id (an integer) and idb (a name)"
        log.warning("task %s refused: %s", EXTRACT_PART, reason)
        return {"run_id": None, "state": RunState.REJECTED, "reason": reason}
    return run_part(run_id, idb)


def _next_items() -> None:
    """B1: an item ended; start the back-fill's next ones now rather than at the beat's next
    tick (the same decision, under the admission lock). The beat does it anyway: a failure
    here changes nothing."""
    from datetime import UTC, datetime

    from gim_tasks.runtime import backfills
    from gim_tasks.runtime.celery_app import app

    try:
        backfills.advance(_engine(), app, datetime.now(UTC))
    except Exception:
        log.exception("could not start the next back-fill items (the beat will)")


def _announce(run_id: int) -> None:
    """Queue the run's notification mails (A3), if anyone subscribed; the beat relays them
    if this message is lost."""
    from gim_tasks.monitor import notify
    from gim_tasks.runtime.celery_app import app

    try:
        if notify.has_pending(_engine(), run_id):
            notify.send_task(app, run_id)
    except Exception:  # a mail problem never changes the run (A3)
        log.exception("run %s: could not queue its notifications", run_id)


def notify_task(self: Any, run_id: int) -> dict[str, int]:
    """Send a run's notification mails; retried with back-off while SMTP fails (A3)."""
    from gim_tasks.monitor import notify

    sent, pending = notify.deliver(_engine(), get_settings(), run_id)
    if pending:
        attempt = self.request.retries + 1
        raise self.retry(countdown=notify.backoff(attempt).total_seconds())
    return {"run_id": run_id, "sent": sent}


def request_stop_of_active_runs(**_: Any) -> None:
    """Warm shutdown (SIGTERM): ask this worker's running jobs to stop at their next safe
    point, so the current batch finishes and the run ends Stopped instead of being cut off.
    The jobs see the request through their heartbeat (runtime/runs.py)."""
    from celery.worker import state

    from gim_tasks.runtime import parts

    given_back = parts.shut_down()  # H2: this worker's Extract parts go to another worker
    if given_back:
        log.warning("worker shutting down: giving back %s Extract part(s)", given_back)
    task_ids = [request.id for request in list(state.active_requests)]
    if not task_ids:
        return
    import sqlalchemy as sa

    from gim_tasks.db.tables import job_run
    from gim_tasks.lifecycle import StopKind

    with _engine().begin() as conn:
        conn.execute(
            sa.update(job_run)
            .where(
                job_run.c.task_id.in_(task_ids),
                job_run.c.state == RunState.RUNNING,
                job_run.c.stop_requested_at.is_(None),
            )
            .values(
                stop_requested_at=sa.func.now(),
                reason="worker shutting down",
                ended_by="worker",
                stop_kind=StopKind.SHUTDOWN.value,
            )
        )
    log.warning("worker shutting down: asked runs of tasks %s to stop", task_ids)


def register(app: Celery) -> None:
    from celery import signals

    from gim_tasks.monitor.notify import MAX_ATTEMPTS, NOTIFY_TASK

    signals.worker_shutting_down.connect(request_stop_of_active_runs, weak=False)
    # shared=False: the tasks belong to this app only (a shared task would be added to every
    # app created later in the process, under a name that is already taken).
    app.task(name=NOTIFY_TASK, bind=True, acks_late=True, max_retries=MAX_ATTEMPTS, shared=False)(
        notify_task
    )
    for info in JOBS:
        app.task(name=info.name, bind=True, acks_late=True, shared=False)(_task_for(info.name))
    app.task(name=EXTRACT_PART, acks_late=True, shared=False)(part_task)


#: The keyword arguments a job task takes; anything else is refused, naming it.
TASK_ARGUMENTS = ("run_id", "params", "force", "actor")

#: P6: the actor of a raw task message that names none.
UNNAMED = "celery (unnamed)"
#: What a message's ``actor`` may be: a plain name (it is shown and audited as given).
ACTOR = re.compile(r"[\w.@+-]{1,64}")


def bad_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Why a task message's arguments are refused (a raw ``celery call`` or a Flower message
    can carry anything), or None. Nothing is recorded for a refused message."""
    if args:
        return (
            "positional arguments are not accepted; pass keyword arguments, e.g. celery call "
            f'{AGGREGATE} --kwargs \'{{"params": "-insertPendingAgg ..."}}\''
        )
    unknown = sorted(set(kwargs) - set(TASK_ARGUMENTS))
    if unknown:
        return (
            f"unknown argument(s) {', '.join(unknown)}; a job task takes "
            f"{', '.join(TASK_ARGUMENTS)}"
        )
    run_id = kwargs.get("run_id")
    if run_id is not None and (isinstance(run_id, bool) or not isinstance(run_id, int)):
        return f"run_id must be an integer, got {run_id!r}"
    params = kwargs.get("params")
    if params is not None and not isinstance(params, str | dict):
        return f"params must be a string, got {params!r}"
    if not isinstance(kwargs.get("force", False), bool):
        return f"force must be true or false, got {kwargs['force']!r}"
    actor = kwargs.get("actor")
    if actor is not None and not (isinstance(actor, str) and ACTOR.fullmatch(actor)):
        return (
            f"actor must be a name of 1-64 letters, digits, '_', '.', '@', '+' or '-', "
            f"got {actor!r}"
        )
    return None


def _task_for(job: str) -> Any:
    """The Celery task of ``job``. The job is bound here, not taken from the message: a
    message cannot make one job's task run another."""

    def task(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        problem = bad_arguments(args, kwargs)
        if problem is not None:
            log.warning("task %s refused: %s", job, problem)
            return {"run_id": None, "state": RunState.REJECTED, "reason": problem}
        return run_job(
            job,
            self.request.id,
            kwargs.get("run_id"),
            kwargs.get("params"),
            bool(kwargs.get("force", False)),
            kwargs.get("actor"),
        )

    task.__name__ = task.__qualname__ = f"task_{job}"
    return task
