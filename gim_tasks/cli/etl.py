"""``gim idb …``, ``gim run JOB --local`` and ``gim etl status``."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gim_tasks.cli.common import (
    ActorOption,
    JsonFlag,
    console,
    current_actor,
    mart_engine,
    out,
    settings,
)
from gim_tasks.errors import GimError, aware_instant
from gim_tasks.lifecycle import RunState, Via
from gim_tasks.schedule.jobs import AGGREGATE, JOB_NAMES

if TYPE_CHECKING:
    from rich.progress import Progress

    from gim_tasks.jobs.base import JobContext
    from gim_tasks.runtime.local import LocalOutcome

# Heavy modules (SQLAlchemy, psycopg, the job bodies, the runtime) are imported inside the
# commands: `gim --help` and the light commands must not pay for them (cli/common.py).

idb_app = typer.Typer(
    rich_markup_mode=None, help="Source IDB databases: schema and traffic.", no_args_is_help=True
)
etl_app = typer.Typer(
    rich_markup_mode=None, help="ETL state: marks, lag, pending rows, facts.", no_args_is_help=True
)


def _idb_urls() -> list[str]:
    urls = settings().idb_urls
    if not urls:
        raise GimError("GIM_IDB_URLS is empty: set it to the IDB database URLs, comma-separated")
    return urls


def _pick_idb(index: int) -> str:
    urls = _idb_urls()
    if not 1 <= index <= len(urls):
        raise GimError(f"--idb {index} is out of range: GIM_IDB_URLS lists {len(urls)} IDB(s)")
    return urls[index - 1]


IdbOption = Annotated[int, typer.Option("--idb", help="Which IDB of GIM_IDB_URLS (1-based).")]


@idb_app.command("init")
def idb_init() -> None:
    """Create (or complete) the IDB schema in every database of GIM_IDB_URLS."""
    from gim_tasks.db.engine import connect, make_engine
    from gim_tasks.idb.schema import init_idb
    from gim_tasks.settings import redact

    for url in _idb_urls():
        engine = make_engine(url)
        with connect(engine, "IDB"):
            pass
        created = init_idb(engine)
        out.print(
            f"{redact(url)}: {len(created)} table(s) created"
            if created
            else f"{redact(url)}: schema present",
            markup=False,
        )


@idb_app.command("generate")
def idb_generate(
    start: Annotated[
        str, typer.Option(help="First hour, ISO-8601 with offset, e.g. 2026-11-23T00:00+01:00.")
    ],
    hours: Annotated[int, typer.Option(min=1, max=24 * 400, help="Hours of traffic.")] = 24,
    agents: Annotated[int, typer.Option(min=1, max=100_000)] = 200,
    queues: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
    rate: Annotated[
        int, typer.Option(min=0, max=1_000_000, help="Calls per hour at the daily peak.")
    ] = 2000,
    seed: Annotated[int, typer.Option(help="Same seed, same traffic.")] = 1,
    idb: IdbOption = 1,
    as_json: JsonFlag = False,
) -> None:
    """Write deterministic, realistic traffic into one IDB and print what was written."""
    import psycopg

    from gim_tasks.idb.generator import generate

    begin = aware_instant(start, "--start")
    url = _pick_idb(idb)
    with psycopg.connect(url) as conn:
        if as_json:
            counts = generate(
                conn, begin, hours, agents=agents, queues=queues, rate=rate, seed=seed
            )
        else:
            with _progress() as bar:
                task = bar.add_task("generating", total=hours)
                counts = generate(
                    conn,
                    begin,
                    hours,
                    agents=agents,
                    queues=queues,
                    rate=rate,
                    seed=seed,
                    progress=lambda done, total: bar.update(
                        task, completed=done, description=f"hour {done}/{total}"
                    ),
                )
    if as_json:
        print(json.dumps(counts))
    else:
        for kind, count in counts.items():
            out.print(f"{kind}: {count:,}")


@idb_app.command("simulate")
def idb_simulate(
    rate: Annotated[int, typer.Option(min=1, help="Calls per hour.")] = 3600,
    writers: Annotated[int, typer.Option(min=1, max=64, help="Concurrent writers.")] = 4,
    duration: Annotated[float | None, typer.Option(help="Seconds; default until Ctrl-C.")] = None,
    idb: IdbOption = 1,
) -> None:
    """Trickle live calls into an IDB in real time (concurrent writers commit out of id order,
    calls are updated when they end). Ctrl-C stops it."""
    from gim_tasks.idb.simulate import simulate
    from gim_tasks.settings import redact

    url = _pick_idb(idb)
    out.print(f"simulating {rate} calls/h into {redact(url)} with {writers} writers", markup=False)
    counts = simulate(url, rate_per_hour=rate, writers=writers, duration=duration)
    out.print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))


def _progress() -> Progress:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,.0f} rows"),
        TimeElapsedColumn(),
        console=console(),
        transient=True,
    )


def run_local(
    job: str,
    actor: str,
    show_progress: bool = True,
    force: bool = False,
    body: Callable[[JobContext], None] | None = None,
    params: str = "",
    via: Via = Via.LOCAL,
) -> LocalOutcome:
    """Run ``job`` in this process as a real run (M0): the same admission as every path, then
    claim, heartbeat, fencing and a cooperative stop on SIGINT/SIGTERM
    (:mod:`gim_tasks.runtime.local`). A run that must wait says what it waits for."""
    from gim_tasks.db.migrate import schema_state
    from gim_tasks.jobs.registry import body_of
    from gim_tasks.runtime.local import run_in_process

    idb_urls = settings().idb_urls
    engine = mart_engine()
    state = schema_state(engine)
    if not state.at_head:
        raise GimError(f"schema {state.describe()}")
    shown: dict[int, str] = {}

    def on_wait(run_id: int, reason: str) -> None:
        if shown.get(run_id) != reason:
            out.print(f"run {run_id} ({job}): Scheduled: {reason}; waiting (Ctrl-C cancels)")
            shown[run_id] = reason

    def run(progress: Callable[[str, int, int | None], None] | None) -> LocalOutcome:
        return run_in_process(
            engine,
            job,
            actor,
            body or body_of(job) if job in JOB_NAMES else _no_body,
            idb_urls,
            params=params,
            force=force,
            via=via,
            progress=progress,
            on_wait=on_wait,
        )

    if not show_progress:
        return run(None)
    with _progress() as bar:
        task = bar.add_task(job, total=None)
        return run(lambda what, done, total: bar.update(task, description=what, completed=done))


def _no_body(ctx: JobContext) -> None:  # pragma: no cover - an unknown job is never admitted
    raise GimError("unknown job")


@etl_app.command("status")
def etl_status(as_json: JsonFlag = False) -> None:
    """Per IDB marks, rows waiting for Transform, lag (newest staged vs newest fact), recent
    Extract/Transform durations, fact row counts."""
    from rich.table import Table

    from gim_tasks.monitor.mart_status import etl_status as etl_status_data

    data = etl_status_data(mart_engine())
    if as_json:
        print(json.dumps(data, indent=2))
        return
    idbs = Table(
        "IDB",
        "tables",
        "rows extracted",
        "last extract",
        "pending transform",
        "segment facts",
        "discarded",
        box=None,
    )
    for idb in data["idbs"]:
        idbs.add_row(
            idb["idb"] + (" (extracting)" if idb["in_progress"] else ""),
            str(idb["tables"]),
            f"{idb['rows_extracted']:,}",
            (idb["last_extract"] or "-")[:19],
            f"{idb['pending_transform']:,}",
            f"{idb['segment_facts']:,}",
            f"{idb['segment_discards']:,}",
        )
    out.print(idbs)
    table = Table("IDB", "table", "rows extracted", "updated", "state", box=None)
    for mark in data["marks"]:
        table.add_row(
            mark["idb"],
            mark["table"],
            f"{mark['rows_extracted']:,}",
            mark["updated_at"][:19],
            "in progress" if mark["in_progress"] else "done",
        )
    out.print(table)
    out.print(
        f"pending transform: {data['pending_transform']:,} rows; lag: "
        f"{data['lag_seconds'] if data['lag_seconds'] is not None else '-'} s"
    )
    for name, count in data["facts"].items():
        out.print(f"{name}: {count:,}")
    for run in data["last_runs"][:4]:
        out.print(f"{run['job']}: {run['state']} in {run['seconds']} s")


def report_local(outcome: LocalOutcome, job: str, quiet: bool = False) -> None:
    """Print an in-process run's end (unless ``quiet``) and exit as ``gim run`` does: 0
    completed, 1 rejected, cancelled or failed, 2 invalid request, 130 stopped."""
    counts = outcome.counts
    if not quiet:
        if counts is None:
            out.print(
                f"run {outcome.run_id} ({job}): {outcome.state}: {outcome.reason}", markup=False
            )
        else:
            detail = outcome.error or (
                outcome.reason if outcome.state == RunState.STOPPED else None
            )
            out.print(
                f"run {outcome.run_id} ({job}): {outcome.state} (read {counts.read:,}, written "
                f"{counts.written:,}, discarded {counts.discarded:,}, warnings "
                f"{counts.warnings})" + (f": {detail}" if detail else ""),
                markup=False,
            )
    if outcome.state not in (RunState.COMPLETED, RunState.COMPLETED_WITH_WARNINGS):
        raise typer.Exit(130 if outcome.state == RunState.STOPPED else 1)


__all__ = ["etl_app", "idb_app", "report_local", "run_local"]


export_app = typer.Typer(
    rich_markup_mode=None, help="CSV export: progress and files.", no_args_is_help=True
)


def export_status_data() -> dict[str, Any]:
    import sqlalchemy as sa

    from gim_tasks.options import store
    from gim_tasks.runtime.health import output_directory

    engine = mart_engine()
    with engine.connect() as conn:
        options = store.load_options(conn)
        mark = conn.execute(
            sa.text("SELECT exported_through, last_chunk FROM export_mark WHERE id = 1")
        ).one_or_none()
    base = output_directory(options, settings())
    chunks = sorted(base.glob("chunk-*")) if base.exists() else []
    files = [f for chunk in chunks for f in chunk.iterdir() if f.is_file()]
    return {
        "directory": str(base.resolve()),
        "exported_through": mark.exported_through.isoformat() if mark else None,
        "last_chunk": mark.last_chunk if mark else None,
        "chunks_on_disk": len(chunks),
        "files_on_disk": len(files),
        "bytes_on_disk": sum(f.stat().st_size for f in files),
    }


@export_app.command("status")
def export_status(as_json: JsonFlag = False) -> None:
    """Exported-through point, last chunk, chunks and files on disk, disk used."""
    data = export_status_data()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        out.print(f"{key.replace('_', ' ')}: {value if value is not None else '-'}", markup=False)


aggregate_app = typer.Typer(
    rich_markup_mode=None, help="Aggregation: status, one pass, verification.", no_args_is_help=True
)


@aggregate_app.command("status")
def aggregate_status(as_json: JsonFlag = False) -> None:
    """Pending intervals, oldest pending, queued re-aggregation requests, last pass, and per
    hierarchy the newest aggregated interval (freshness)."""
    from gim_tasks.monitor.mart_status import aggregate_status as aggregate_status_data

    data = aggregate_status_data(mart_engine())
    if as_json:
        print(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        if key not in ("freshness", "requests", "last_runs"):
            out.print(f"{key.replace('_', ' ')}: {value if value is not None else '-'}")
    for request in data["requests"]:
        out.print(
            f"  request {request['id']} by {request['requested_by']} at "
            f"{request['requested_at'][:19]}: {request['params']}",
            markup=False,
        )
    for name, at in data["freshness"].items():
        out.print(f"  {name}: newest interval {at or '-'}")


@aggregate_app.command("once")
def aggregate_once(
    params: Annotated[
        str,
        typer.Option(
            "--params",
            help="Queue a re-aggregation first: '-insertPendingAgg <AGR_SET>:<START>:<END>' (M4).",
        ),
    ] = "",
    actor: ActorOption = "",
) -> None:
    """One pass until the queue is empty, then exit: a Job_AggregateGIM run in this process,
    admitted by the same rules as every start (M0, M3, C2). Exit code: 0 completed, 1 rejected
    or failed, 2 malformed --params (nothing started), 130 stopped."""
    from gim_tasks.jobs.aggregate import run_once

    outcome = run_local(
        AGGREGATE,
        actor or current_actor(),
        body=run_once,
        params=params,
        via=Via.AGGREGATE_ONCE,
    )
    counts = outcome.counts
    if counts is None:
        report_local(outcome, AGGREGATE)
        return
    out.print(
        f"run {outcome.run_id}: {outcome.state} ({counts.read:,} intervals, "
        f"{counts.written:,} rows written)" + (f": {outcome.error}" if outcome.error else ""),
        markup=False,
    )
    report_local(outcome, AGGREGATE, quiet=True)


@aggregate_app.command("verify")
def aggregate_verify(
    from_: Annotated[
        str | None,
        typer.Option("--from", help="First local day YYYY-MM-DD (default: the oldest fact day)."),
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Last local day (default: the newest fact day).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Recompute every aggregate level directly from the facts for the range and compare with
    the tables (D3). Exit code 1 on any mismatch."""
    from gim_tasks.aggregate.compute import ensure_tables, fact_day_span, verify
    from gim_tasks.aggregate.registry import HIERARCHIES, LEVELS

    engine = mart_engine()
    try:
        start = date.fromisoformat(from_) if from_ else None
        end = date.fromisoformat(to) if to else None
    except ValueError as error:
        raise GimError(f"--from/--to must be YYYY-MM-DD: {error}") from None
    with engine.begin() as conn:
        ensure_tables(conn)
        # No facts: the whole calendar (any aggregate row is then one too many).
        span = fact_day_span(conn) or (date(1970, 1, 1), date(9999, 12, 31))
        start, end = start or span[0], end or span[1]
        details = [d for h in HIERARCHIES for d in verify(conn, h, start, end)]
    report = {
        "tables_checked": len(HIERARCHIES) * len(LEVELS),
        "mismatches": len(details),
        "details": details,
    }
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        out.print(f"{report['tables_checked']} tables checked, {len(details)} with mismatches")
        for detail in details:
            out.print(f"  {detail}", markup=False)
    if details:
        raise typer.Exit(1)
