"""``gim backfill create|list|show|pause|resume|cancel`` (SPEC B1): replay aggregation and
export over past days. The stored back-fills and their rules: ``gim_tasks.runtime.backfills``;
the items and their order: ``gim_tasks.schedule.backfill``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from gim_tasks.cli.common import ActorOption, JsonFlag, current_actor, mart_engine, out

app = typer.Typer(
    help="Back-fills (B1): replay aggregation and export over past days, resumable, at the "
    "lowest priority; each item (day x step) is a run in History.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

IdArgument = Annotated[int, typer.Argument(help="The back-fill's id (gim backfill list).")]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown (no item of a step measured yet)"
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{rest:02d}s" if hours else f"{minutes}m{rest:02d}s"


def _progress(found: dict[str, Any]) -> str:
    parts = []
    for step, counts in found["progress"].items():
        detail = ", ".join(f"{n} {k}" for k, n in counts.items() if k != "items")
        parts.append(f"{step}: {counts['items']} item(s) ({detail})")
    return "; ".join(parts) or "no items"


@app.command("create")
def create_command(
    first: Annotated[str, typer.Option("--from", help="First local day, YYYY-MM-DD.")],
    last: Annotated[str, typer.Option("--to", help="Last local day, YYYY-MM-DD (a past day).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required; shown with it).")] = "",
    steps: Annotated[
        str, typer.Option("--steps", help="Comma-separated: aggregate, export.")
    ] = "aggregate,export",
    reprocess: Annotated[
        str,
        typer.Option(
            "--reprocess",
            help="missing: days with absent aggregates / chunks gone from the export directory; "
            "failed: days with a failing quality check or a failed back-fill item; all: every "
            "day.",
        ),
    ] = "missing",
    order: Annotated[
        str, typer.Option("--order", help="oldest (first day first) or newest.")
    ] = "oldest",
    max_parallel: Annotated[
        int, typer.Option("--max-parallel", help="Items running at once, 1 to 16.")
    ] = 1,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the items and the estimate; change nothing.")
    ] = False,
    actor: ActorOption = "",
    as_json: JsonFlag = False,
) -> None:
    """Create a back-fill (B1): its items (one per day and step) start at the lowest priority,
    never during maintenance nor ahead of an ETL cycle, up to --max-parallel at once. A day
    whose facts were purged is refused up front (D5). --dry-run lists what each item would do
    and the time it would take, from measured items, and records nothing."""
    from gim_tasks.errors import local_date
    from gim_tasks.runtime import backfills
    from gim_tasks.schedule.backfill import Request

    request = Request(
        local_date(first, "--from"),
        local_date(last, "--to"),
        tuple(steps.split(",")),
        reprocess,
        order,
        max_parallel,
        reason,
    )
    found = backfills.create(mart_engine(), request, actor or current_actor(), dry_run=dry_run)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    from rich.table import Table

    table = Table("#", "day", "step", "what it does", box=None)
    for item in found["items"]:
        table.add_row(str(item["position"]), item["day"], item["step"], item["action"])
    out.print(table)
    head = "dry run: nothing recorded" if dry_run else f"back-fill {found['id']} created"
    out.print(
        f"{head}: {len(found['items'])} item(s), {found['from']} to {found['to']}, "
        f"estimate {_duration(found['estimate_seconds'])}",
        markup=False,
    )


@app.command("list")
def list_command(as_json: JsonFlag = False) -> None:
    """Back-fills, newest first: state, progress, time left, why the next item waits."""
    from rich.markup import escape
    from rich.table import Table

    from gim_tasks.runtime import backfills

    found = backfills.listing(mart_engine())
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("id", "days", "steps", "state", "done", "left", "by", "reason", box=None)
    for row in found:
        state = row["state"] + (f" ({row['waiting']})" if row["waiting"] else "")
        table.add_row(
            str(row["id"]),
            f"{row['from']} to {row['to']}",
            ",".join(row["steps"]),
            escape(state),
            f"{row['done']}/{row['total']}",
            _duration(row["estimate_seconds"]) if row["state"] in ("active", "paused") else "",
            escape(row["created_by"]),
            escape(row["reason"]),
        )
    out.print(table if found else "no back-fill yet (gim backfill create)")


@app.command("show")
def show_command(backfill_id: IdArgument, as_json: JsonFlag = False) -> None:
    """One back-fill: each item's run, attempt, status and time, progress per step."""
    from rich.markup import escape
    from rich.table import Table

    from gim_tasks.runtime import backfills

    found = backfills.show(mart_engine(), backfill_id)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    out.print(
        f"back-fill {found['id']}: {found['state']}, {found['from']} to {found['to']}, "
        f"{','.join(found['steps'])}, reprocess {found['reprocess']}, order {found['order']}, "
        f"max-parallel {found['max_parallel']}; by {found['created_by']}: {found['reason']}",
        markup=False,
    )
    out.print(f"progress: {_progress(found)}", markup=False)
    if found["waiting"]:
        out.print(f"next item waits: {found['waiting']}", markup=False)
    if found["state"] in ("active", "paused"):
        out.print(f"time left: {_duration(found['estimate_seconds'])}", markup=False)
    table = Table("#", "day", "step", "status", "run", "attempt", "seconds", "error", box=None)
    for item in found["items"]:
        table.add_row(
            str(item["position"]),
            item["day"],
            item["step"],
            item["status"],
            str(item["run_id"] or ""),
            str(item["attempt"] or ""),
            str(item["seconds"] if item["seconds"] is not None else ""),
            escape((item["error"] or "")[:80]),
        )
    out.print(table)


def _change(backfill_id: int, action: str, actor: str) -> None:
    from gim_tasks.runtime import backfills

    out.print(
        backfills.change(mart_engine(), backfill_id, action, actor or current_actor()),
        markup=False,
    )


@app.command("pause")
def pause_command(backfill_id: IdArgument, actor: ActorOption = "") -> None:
    """Pause a back-fill: no new item starts; running ones finish. Resume goes on from there."""
    _change(backfill_id, "pause", actor)


@app.command("resume")
def resume_command(backfill_id: IdArgument, actor: ActorOption = "") -> None:
    """Resume a paused back-fill where it stopped."""
    _change(backfill_id, "resume", actor)


@app.command("cancel")
def cancel_command(backfill_id: IdArgument, actor: ActorOption = "") -> None:
    """Cancel a back-fill: no new item starts; running items stop at their next commit (stop
    kind operator; an aggregate item rolls its day back whole)."""
    _change(backfill_id, "cancel", actor)
