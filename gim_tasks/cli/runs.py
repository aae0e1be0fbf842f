"""``gim run``, ``gim stop``, ``gim cancel``, ``gim jobs``, ``gim worker``, ``gim beat``."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from gim_tasks.cli.common import ActorOption, JsonFlag, current_actor, mart_engine, out, settings
from gim_tasks.cli.etl import report_local, run_local
from gim_tasks.errors import GimError
from gim_tasks.lifecycle import RunState, Via
from gim_tasks.runtime.queues import QUEUES
from gim_tasks.schedule.jobs import AGGREGATE, EXPORT, EXTRACT, UPDATE_STATS

# The manager (SQLAlchemy), Celery's client and rich are imported inside the commands.

CELERY_APP = "gim_tasks.runtime.celery_app"
SCHEDULER = "gim_tasks.runtime.beat:GimScheduler"
FINAL = (
    RunState.COMPLETED,
    RunState.COMPLETED_WITH_WARNINGS,
    RunState.FAILED,
    RunState.STOPPED,
    RunState.CANCELLED,
    RunState.REJECTED,
)


def _describe(run: dict[str, Any]) -> str:
    text = f"run {run['id']} ({run['job']}): {run['state']}"
    if run["state"] in (
        RunState.COMPLETED,
        RunState.COMPLETED_WITH_WARNINGS,
        RunState.FAILED,
        RunState.STOPPED,
    ):
        text += (
            f" (read {run['rows_read']:,}, written {run['rows_written']:,}, discarded "
            f"{run['rows_discarded']:,}, warnings {run['warnings']})"
        )
    if run.get("error"):
        text += f": {run['error']}"
    elif run.get("reason") and run["state"] != RunState.COMPLETED:
        text += f": {run['reason']}"
    return text


def _get(run_id: int) -> dict[str, Any]:
    from gim_tasks.runtime.listing import list_runs

    for run in list_runs(settings().database_url, "all", limit=1, run_id=run_id):
        return run
    raise GimError(f"run {run_id} does not exist")


def wait_for(run_id: int, timeout: float | None = None) -> dict[str, Any]:
    """Follow a run to its end with a progress line."""
    from rich.markup import escape

    deadline = None if timeout is None else time.monotonic() + timeout
    shown = ""
    with out.status("") as status:
        while True:
            run = _get(run_id)
            line = f"run {run_id} {run['job']}: {run['state']}, {run['rows_read']:,} rows read"
            if line != shown:
                status.update(escape(line))
                shown = line
            if run["state"] in FINAL:
                return run
            if deadline is not None and time.monotonic() > deadline:
                raise GimError(f"run {run_id} still {run['state']} after {timeout:.0f} s")
            time.sleep(0.5)


def run_command(
    job: Annotated[str, typer.Argument(help=f"Job name, e.g. {EXTRACT}.")],
    params: Annotated[
        str,
        typer.Option(
            "--params",
            help=f"Job parameters ({AGGREGATE} only, e.g. '-insertPendingAgg ALLSETS:…').",
        ),
    ] = "",
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run to its end.")] = False,
    local: Annotated[
        bool, typer.Option("--local", help="Run in this process, not on a worker (same rules).")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Admin: run a job that is not run "
            f"manually ({UPDATE_STATS}, {EXPORT}), recorded "
            "as forced (M7).",
        ),
    ] = False,
    at: Annotated[
        str,
        typer.Option(
            "--at",
            help="Run at this instant instead of now (P4): ISO with its offset, or a local "
            "time YYYY-MM-DDTHH:MM of the schedule's zone; needs --reason.",
        ),
    ] = "",
    reason: Annotated[
        str, typer.Option("--reason", help="With --at: why (shown with the planned run).")
    ] = "",
    actor: ActorOption = "",
) -> None:
    """Run a job now (M1). Prints the run id and its state: Running (sent to a worker),
    Scheduled (waiting for an exclusivity rule, with the reason) or Rejected (with the reason).
    Every path takes the same admission decision (M0); with --local the run executes in this
    process as a real run (heartbeat, lease, `gim stop`, Ctrl-C and SIGTERM stop it), and a
    run that must wait (M5, S13) waits here, saying for what.
    Exit code: 0 admitted (with --wait or --local: completed), 1 rejected, cancelled or
    failed, 2 malformed request (nothing recorded), 130 stopped."""

    who = actor or current_actor()
    if at:
        if local or wait:
            raise GimError("--at plans the run for the beat: it takes neither --local nor --wait")
        _plan_at(job, at, reason, who, params, force)
        return
    if local:
        report_local(run_local(job, who, force=force, params=params), job)
        return
    from gim_tasks.runtime.dispatch import request_and_send

    admission = request_and_send(mart_engine(), job, who, params, force, via=Via.CLI)
    line = f"run {admission.run_id} ({job}): {admission.state}"
    out.print(line + (f": {admission.reason}" if admission.reason else ""), markup=False)
    if admission.state == RunState.REJECTED:
        raise typer.Exit(1)
    if wait:
        run = wait_for(admission.run_id)
        out.print(_describe(run), markup=False)
        if run["state"] not in (RunState.COMPLETED, RunState.COMPLETED_WITH_WARNINGS):
            raise typer.Exit(130 if run["state"] == RunState.STOPPED else 1)


def _plan_at(job: str, at: str, reason: str, who: str, params: str, force: bool) -> None:
    from gim_tasks.options import store
    from gim_tasks.runtime import run_at

    engine = mart_engine()
    with engine.connect() as conn:
        tz_name = store.load_options(conn).schedule().timezone
    fid = run_at.plan_run(engine, job, run_at.instant_of(at, tz_name), reason, who, params, force)
    out.print(f"{job} planned: {fid} (gim cancel {fid} cancels it)", markup=False)


def stop_command(
    run_id: Annotated[int, typer.Argument(help="Run id.")], actor: ActorOption = ""
) -> None:
    """Stop a Running run (M6): it stops at its next safe point, keeping committed work; after
    a grace period the beat revokes it with terminate. A Scheduled run is cancelled."""
    from gim_tasks.runtime import manager

    out.print(manager.stop_run(mart_engine(), run_id, actor or current_actor()), markup=False)


def cancel_command(
    run: Annotated[
        str, typer.Argument(help="Run id, or the firing id at:JOB:ISO of a planned run (P4).")
    ],
    actor: ActorOption = "",
) -> None:
    """Cancel a Scheduled run (M6): it leaves the scheduled list and is recorded Cancelled; or
    a run planned at a set time (P4), before its instant (ledger verdict `cancelled`)."""
    who = actor or current_actor()
    if run.startswith("at:"):
        from gim_tasks.runtime import run_at

        out.print(run_at.cancel_planned(mart_engine(), run, who), markup=False)
        return
    if not run.isdigit():
        raise GimError(f"'{run}' is neither a run id nor a planned run's firing id at:JOB:ISO")
    from gim_tasks.runtime import manager

    out.print(manager.cancel_run(mart_engine(), int(run), who), markup=False)


def jobs_command(
    running: Annotated[bool, typer.Option("--running", help="Only Running runs.")] = False,
    scheduled: Annotated[bool, typer.Option("--scheduled", help="Only Scheduled runs.")] = False,
    history: Annotated[bool, typer.Option("--history", help="Only ended runs.")] = False,
    skipped: Annotated[
        bool,
        typer.Option(
            "--skipped",
            help="Only firings a rule made the scheduler skip (S1, S2, S6, S9, S12); the other "
            "lists leave them out.",
        ),
    ] = False,
    category: Annotated[
        str | None, typer.Option(help="ETL, Aggregation, Maintenance, Statistics or Export.")
    ] = None,
    job: Annotated[str | None, typer.Option(help="Only this job.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List runs, newest first (A2): id, job, state, trigger, actor, start, end, counts."""
    from rich.markup import escape
    from rich.table import Table

    from gim_tasks.runtime.listing import list_runs

    if sum((running, scheduled, history, skipped)) > 1:
        raise GimError("choose at most one of --running, --scheduled, --history, --skipped")
    which = (
        "running"
        if running
        else "scheduled"
        if scheduled
        else "history"
        if history
        else "skipped"
        if skipped
        else "all"
    )
    runs = list_runs(settings().database_url, which, category, job, limit)
    if as_json:
        print(json.dumps(runs, indent=2))
        return
    table = Table(box=None)
    for column in (
        "id",
        "job",
        "state",
        "trigger",
        "actor",
        "started",
        "ended",
        "read",
        "written",
        "reason / error",
    ):
        table.add_column(column)
    for run in runs:
        table.add_row(
            str(run["id"]),
            run["job"],
            run["state"]
            + (
                f" (attempt {run['attempt']}/{run['max_attempts']})"
                if run["max_attempts"] > 1
                else ""
            )
            + (f", retry {run['retry']}" if run["retry"] else ""),
            run["trigger"],
            run["actor"],
            (run["started_at"] or "")[:19],
            (run["ended_at"] or "")[:19],
            f"{run['rows_read']:,}",
            f"{run['rows_written']:,}",
            escape(run["error"] or run["reason"] or ""),
        )
    out.print(table)


def _exec_celery(args: list[str]) -> None:
    celery = str(Path(sys.executable).with_name("celery"))
    # O6: with JSON logs, no start-up banner (plain text on stdout): every line is JSON.
    from gim_tasks.logs import log_format  # standard library only: no start-up cost

    quiet = ["--quiet"] if log_format() == "json" else []
    os.execv(celery, [celery, "-A", CELERY_APP, *quiet, *args])


def worker_command(ctx: typer.Context) -> None:
    """Start a worker (celery worker; extra options are passed on, e.g. -Q etl -c 4). Default
    queues: all."""
    args = list(ctx.args)
    if not any(a in ("-Q", "--queues") or a.startswith("--queues=") for a in args):
        args = ["-Q", ",".join(QUEUES), *args]
    _exec_celery(["worker", "--loglevel", os.environ.get("GIM_LOG_LEVEL", "INFO"), *args])


def beat_command(ctx: typer.Context) -> None:
    """Start the beat (celery beat with the gim-tasks RedBeat scheduler); extra options are
    passed on. Run two for high availability: one is active, the other waits."""
    _exec_celery(
        [
            "beat",
            "-S",
            SCHEDULER,
            "--loglevel",
            os.environ.get("GIM_LOG_LEVEL", "INFO"),
            "--max-interval",
            "1",
            *ctx.args,
        ]
    )
