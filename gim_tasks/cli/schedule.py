"""``gim schedule``: the ideal timeline of a period and every job's Next Run (SPEC §4, A1)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gim_tasks.cli.common import JsonFlag, mart_engine, out
from gim_tasks.errors import GimError, aware_instant

if TYPE_CHECKING:
    from gim_tasks.schedule.options import ScheduleOptions

# The schedule is pure and light; SQLAlchemy is loaded only to read the stored options.

app = typer.Typer(
    rich_markup_mode=None,
    help="The schedule: timeline of a period, Next Run of every job.",
    no_args_is_help=True,
)

OptionsFile = Annotated[
    Path | None,
    typer.Option(
        "--options-file",
        help="INI file of options to use instead of the stored ones.",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]


def _schedule_options(options_file: Path | None) -> tuple[ScheduleOptions, Any]:
    """The options (of the file, or stored) and, when stored, the operators' holds (P1-P3)."""
    from gim_tasks.options.values import Options, parse_ini

    if options_file is not None:
        texts = parse_ini(options_file.read_text(encoding="utf-8"), str(options_file))
        return Options.from_texts(texts).schedule(), None
    from gim_tasks.db.engine import connect
    from gim_tasks.options import store
    from gim_tasks.runtime import holds

    with connect(mart_engine()) as conn:
        return store.load_options(conn).schedule(), holds.load(conn, datetime.now(UTC))


@app.command("plan")
def plan_command(
    start: Annotated[
        str,
        typer.Option(
            help="First day (or instant) in the schedule's time "
            "zone: YYYY-MM-DD or YYYY-MM-DDTHH:MM."
        ),
    ],
    days: Annotated[int, typer.Option(min=1, max=366, help="Number of days.")] = 1,
    options_file: OptionsFile = None,
    as_json: JsonFlag = False,
) -> None:
    """The ideal timeline for the period, assuming runs take no time: ETL cycles (as starts of
    Job_ExtractICON), aggregation windows (start/stop of Job_AggregateGIM), maintenance,
    statistics and export firings, honouring run-scheduler and the run-* flags."""
    from gim_tasks.schedule.plan import parse_start, period, plan

    options, holds = _schedule_options(options_file)
    try:
        begin, end = period(options, parse_start(start), days)
    except ValueError as error:
        raise GimError(str(error)) from None
    events = plan(options, begin, end)
    held: dict[int, str] = {}
    if holds:  # stored options: the operators' holds too (SQLAlchemy is loaded already)
        from gim_tasks.monitor.ledger import held_starts

        held = held_starts(options, holds, events)
    if as_json:
        rows = [
            {**event.as_dict(), **({"held": held[i]} if i in held else {})}
            for i, event in enumerate(events)
        ]
        print(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table("at", "job", "event", *(["held (P1-P3)"] if held else []), box=None)
    for i, event in enumerate(events):
        table.add_row(
            event.at.strftime("%Y-%m-%d %H:%M %Z"),
            event.job,
            event.event,
            *([held.get(i, "")] if held else []),
        )
    out.print(table)
    out.print(f"{len(events)} event(s), {options.timezone}")


@app.command("next")
def next_command(
    options_file: OptionsFile = None,
    now: Annotated[
        str | None,
        typer.Option(
            help="Instead of the current time: an ISO-8601 "
            "instant with offset, e.g. 2026-11-22T10:00+01:00."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Each job's Next Run (in the schedule's time zone) and its schedule in words."""
    from gim_tasks.schedule.plan import next_run_table

    options, holds = _schedule_options(options_file)
    instant = datetime.now(UTC)
    if now is not None:
        instant = aware_instant(now, "--now")
    rows = next_run_table(options, instant, holds)
    if as_json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
        return
    from rich.table import Table

    table = Table("active", "job", "schedule", "next run", box=None)
    for row in rows:
        table.add_row(
            "yes" if row.active else "no",
            row.job,
            row.schedule,
            row.next_run.strftime("%Y-%m-%d %H:%M %Z") if row.next_run else "-",
        )
    out.print(table)
