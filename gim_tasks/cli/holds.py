"""``gim pause``, ``gim resume``, ``gim skip``, ``gim blackout``, ``gim holds``: operators'
holds on the plan (SPEC P1-P3). The stored holds and their rules: ``gim_tasks.runtime.holds``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer

from gim_tasks.cli.common import ActorOption, JsonFlag, current_actor, mart_engine, out
from gim_tasks.errors import GimError, aware_instant

# SQLAlchemy and the stores are imported inside the commands (`gim --help` stays fast).

Reason = Annotated[
    str, typer.Option("--reason", help="Why (required; shown with every held firing).")
]
AllFlag = Annotated[bool, typer.Option("--all", help="Every job (a global pause).")]
JobArgument = Annotated[str, typer.Argument(help="Job name (gim schedule next lists them).")]


def _one_job(job: str, every: bool) -> str | None:
    if bool(job) == every:
        raise GimError("name one job, or --all for every job")
    return job or None


def pause_command(
    reason: Reason,
    job: Annotated[str, typer.Argument(help="Job name (or --all).")] = "",
    every: AllFlag = False,
    until: Annotated[
        str,
        typer.Option(
            "--until", help="Resume at this instant, ISO-8601 with its offset (default: never)."
        ),
    ] = "",
    stop: Annotated[
        bool,
        typer.Option(
            "--stop/--drain",
            help="Stop its running run now (stop kind operator), or let it finish (default).",
        ),
    ] = False,
    actor: ActorOption = "",
) -> None:
    """Pause a job, or every job (P1): its scheduled firings do not start; each one is judged
    `paused` in the firing ledger, with who and why, and raises no missed or late alert.
    Manual starts stay allowed. A global pause keeps each job's own pause."""
    from gim_tasks.runtime import holds

    target = _one_job(job, every)
    instant = aware_instant(until, "--until") if until else None
    done = holds.pause(
        mart_engine(), target, reason, actor or current_actor(), until=instant, stop=stop
    )
    what = "every job" if target is None else target
    text = f"{what} paused" + (f" until {instant.isoformat()}" if instant else "")
    if done.stopped:
        text += f"; stop requested for run(s) {', '.join(map(str, done.stopped))}"
    out.print(text, markup=False)


def resume_command(
    job: Annotated[str, typer.Argument(help="Job name (or --all).")] = "",
    every: Annotated[
        bool,
        typer.Option("--all", help="End the global pause (each job's own pause stays)."),
    ] = False,
    actor: ActorOption = "",
) -> None:
    """End a pause (P1): the job's next firing starts again."""
    from gim_tasks.runtime import holds

    out.print(holds.resume(mart_engine(), _one_job(job, every), actor or current_actor()))


def skip_command(
    job: JobArgument,
    reason: Reason,
    at: Annotated[
        str, typer.Option("--at", help="The firing's instant, ISO-8601 with its offset.")
    ] = "",
    firing: Annotated[str, typer.Option("--firing", help="The firing id (gim firings).")] = "",
    actor: ActorOption = "",
) -> None:
    """Skip one future firing of a job (P2): judged `operator-skip` in the ledger. Refused
    for a past or unknown firing, naming the next planned instants."""
    from gim_tasks.options import store
    from gim_tasks.runtime import holds

    engine = mart_engine()
    with engine.connect() as conn:
        options = store.load_options(conn).schedule()
    instant = aware_instant(at, "--at") if at else None
    done = holds.skip(
        engine, options, job, reason, actor or current_actor(), at=instant, firing=firing or None
    )
    out.print(f"firing {done} will be skipped", markup=False)


blackout_app = typer.Typer(
    rich_markup_mode=None,
    help="Blackout windows (P3): named periods in the schedule's zone when the jobs they name "
    "do not start (default: every job but maintenance).",
    no_args_is_help=True,
)


@blackout_app.command("add")
def blackout_add(
    name: Annotated[str, typer.Argument(help="The window's name.")],
    reason: Reason,
    start: Annotated[
        str, typer.Option("--from", help="One-off: first local time YYYY-MM-DDTHH:MM.")
    ] = "",
    end: Annotated[str, typer.Option("--to", help="One-off: end, local YYYY-MM-DDTHH:MM.")] = "",
    weekly: Annotated[
        str, typer.Option("--weekly", help="Weekly: 'Sat 00:00-Sun 06:00' (local wall times).")
    ] = "",
    month_end: Annotated[
        int, typer.Option("--month-end", help="The last N local days of every month.")
    ] = 0,
    jobs: Annotated[
        str, typer.Option("--jobs", help="Comma-separated jobs (default: all but maintenance).")
    ] = "",
    actor: ActorOption = "",
) -> None:
    """Add a blackout window: exactly one of --from/--to, --weekly, --month-end."""
    from gim_tasks.runtime import holds
    from gim_tasks.schedule.holds import Blackout

    kinds = [kind for kind, given in (("once", start or end), ("weekly", weekly),
                                      ("month-end", month_end)) if given]  # fmt: skip
    if len(kinds) != 1:
        raise GimError("give exactly one of --from/--to, --weekly or --month-end")
    window = Blackout(
        name,
        kinds[0],  # type: ignore[arg-type]
        reason,
        tuple(j.strip() for j in jobs.split(",") if j.strip()),
        start or None,
        end or None,
        weekly or None,
        month_end or None,
    )
    holds.add_blackout(mart_engine(), window, actor or current_actor())
    out.print(f"blackout '{name}' added: {window.describe()}", markup=False)


@blackout_app.command("remove")
def blackout_remove(name: Annotated[str, typer.Argument(help="The window's name.")]) -> None:
    """Remove a blackout window."""
    from gim_tasks.runtime import holds

    holds.remove_blackout(mart_engine(), name, current_actor())
    out.print(f"blackout '{name}' removed", markup=False)


@blackout_app.command("list")
def blackout_list(as_json: JsonFlag = False) -> None:
    """The blackout windows."""
    _print(as_json, only="blackouts")


def holds_command(as_json: JsonFlag = False) -> None:
    """Every hold in force: pauses, skipped firings, blackout windows (P1-P3)."""
    _print(as_json)


def _print(as_json: bool, only: str | None = None) -> None:
    from gim_tasks.runtime import holds

    found = holds.listing(mart_engine())
    if only:
        found = {only: found[only]}
    if as_json:
        print(json.dumps(found, default=_json))
        return
    lines = []
    for pause in found.get("pauses", []):
        who = "all jobs" if pause["job"] == "*" else pause["job"]
        until = f" until {pause['until'].isoformat()}" if pause["until"] else ""
        lines.append(f"paused    {who}{until}: {pause['reason']} ({pause['actor']})")
    for skip in found.get("skips", []):
        lines.append(f"skip      {skip['firing_id']}: {skip['reason']} ({skip['actor']})")
    for window in found.get("blackouts", []):
        jobs = ", ".join(window["jobs"]) or "all but maintenance"
        lines.append(
            f"blackout  {window['name']}: {window['describe']} [{jobs}]: {window['reason']}"
        )
    out.print("\n".join(lines) or "no holds", markup=False)


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value)
