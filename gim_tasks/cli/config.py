"""``gim config``: show, set, import, export and check the operator options (SPEC §2, §3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gim_tasks.cli.common import ActorOption, JsonFlag, current_actor, mart_engine, out, settings
from gim_tasks.errors import GimError

if TYPE_CHECKING:
    from gim_tasks.options.check import CheckReport

# Heavy modules (SQLAlchemy, the option store, the server checks) are imported inside the
# commands: `gim --help` must not pay for them (cli/common.py).

app = typer.Typer(
    rich_markup_mode=None,
    help="Operator options: show, set, import, export, check.",
    no_args_is_help=True,
)


def _print_report(report: CheckReport, as_json: bool = False) -> None:
    from rich.markup import escape

    if as_json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "errors": [f.as_dict() for f in report.errors],
                    "warnings": [f.as_dict() for f in report.warnings],
                },
                indent=2,
            )
        )
        return
    if not report.findings:
        out.print("configuration check: no errors, no warnings")
        return
    for finding in report.findings:
        color = "red" if finding.level == "error" else "yellow"
        out.print(f"[{color}]{finding.level}[/]: {escape(finding.item)}: {escape(finding.message)}")
    out.print(
        f"configuration check: {len(report.errors)} error(s), {len(report.warnings)} warning(s)"
    )


@app.command("show")
def show(
    section: Annotated[str | None, typer.Argument(help="Only this section.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show every option's value, default and who last changed it."""
    from rich.markup import escape
    from rich.table import Table

    from gim_tasks.db.engine import connect
    from gim_tasks.options import store
    from gim_tasks.options.registry import OPTIONS, SECTIONS, lookup

    if section is not None and section not in SECTIONS:
        lookup(section, "")
    with connect(mart_engine()) as conn:
        options = store.load_options(conn)
    rows = [spec for spec in OPTIONS if section in (None, spec.section)]
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "section": spec.section,
                        "option": spec.name,
                        "value": options.texts[spec.key],
                        "default": spec.default,
                        "changed_by": getattr(options.changes.get(spec.key), "actor", None),
                    }
                    for spec in rows
                ],
                indent=2,
            )
        )
        return
    table = Table(box=None)
    for column in ("section", "option", "value", "default", "changed by"):
        table.add_column(column)
    for spec in rows:
        change = options.changes.get(spec.key)
        value = options.texts[spec.key]
        table.add_row(
            spec.section,
            spec.name,
            f"[bold]{value}[/]" if spec.key in options.stored else value,
            spec.default,
            f"{change.actor} {change.at:%Y-%m-%d %H:%M %Z}" if change else "-",
        )
    out.print(table)
    for problem in options.invalid:
        out.print(f"[red]error[/]: {escape(problem)}")


@app.command("set")
def set_(
    section: Annotated[str, typer.Argument(help="Section, e.g. schedule.")],
    option: Annotated[str, typer.Argument(help="Option, e.g. etl-frequency.")],
    value: Annotated[str, typer.Argument(help="New value.")],
    actor: ActorOption = "",
) -> None:
    """Set one option. An invalid value is refused and nothing is stored. The scheduler uses
    the new value from its next tick. The configuration check runs afterwards."""
    from gim_tasks.db.engine import connect
    from gim_tasks.options import store
    from gim_tasks.options.check import check_options

    engine = mart_engine()
    update = store.set_option(
        engine,
        section,
        option,
        value,
        actor or current_actor(),
        output_base=settings().output_directory,
    )
    out.print(str(update), markup=False)
    with connect(engine) as conn:
        _print_report(check_options(store.load_options(conn)))


@app.command("unset")
def unset(
    section: Annotated[str, typer.Argument(help="Section.")],
    option: Annotated[str, typer.Argument(help="Option.")],
    actor: ActorOption = "",
) -> None:
    """Return one option to its default."""
    from gim_tasks.options import store

    update = store.unset_option(mart_engine(), section, option, actor or current_actor())
    out.print(str(update) + " (default)", markup=False)


@app.command("import")
def import_(
    file: Annotated[
        Path,
        typer.Argument(
            help="INI file with [schedule], [gim-etl], [gim-export] (and GIM's [date-time]).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    actor: ActorOption = "",
) -> None:
    """Import options from an INI file: all of them, or none if any line is invalid.

    A Genesys Info Mart option file is read as GIM wrote it: GIM options gim-tasks does not
    use are reported and skipped, [date-time] options go to [gim-etl], Java time zones
    (PST, GMT+02:00) are stored as the IANA zone Java means, with a warning."""
    from gim_tasks.options import store

    text = file.read_text(encoding="utf-8")
    notes: list[str] = []
    updates = store.import_options(
        mart_engine(),
        text,
        actor or current_actor(),
        str(file),
        output_base=settings().output_directory,
        notes=notes,
    )
    for note in notes:
        out.print(note if note.startswith("warning: ") else f"note: {note}", markup=False)
    for update in updates:
        out.print(str(update), markup=False)
    out.print(f"imported {sum(u.changed for u in updates)} change(s) from {file}")


@app.command("export")
def export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print every option as INI (readable back with `gim config import`)."""
    from gim_tasks.db.engine import connect
    from gim_tasks.options import store

    with connect(mart_engine()) as conn:
        text = store.load_options(conn).to_ini()
    if output is None:
        print(text, end="")
    else:
        output.write_text(text, encoding="utf-8")
        out.print(f"wrote {output}")


@app.command("check")
def check(as_json: JsonFlag = False) -> None:
    """Run the configuration check (C1): options, schema, Info Mart, IDBs, Redis, output
    directory. Exit code 1 when it reports an error (no run may start then, C2)."""
    from gim_tasks.db.engine import connect
    from gim_tasks.options import store
    from gim_tasks.runtime.health import check_deployment

    try:
        with connect(mart_engine()) as conn:
            options = store.load_options(conn)
    except GimError:
        from gim_tasks.options.values import Options

        options = Options.defaults()  # the report below names the unreachable database
    report = check_deployment(options, settings())
    _print_report(report, as_json)
    if not report.ok:
        raise typer.Exit(1)


@app.command("history")
def history(
    limit: Annotated[int, typer.Option(help="How many changes.")] = 20, as_json: JsonFlag = False
) -> None:
    """The newest option changes: who, when, old and new value."""
    from rich.markup import escape
    from rich.table import Table

    from gim_tasks.db.engine import connect
    from gim_tasks.options import store

    with connect(mart_engine()) as conn:
        rows = store.option_history(conn, limit)
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "section": r.section,
                        "option": r.name,
                        "old": r.old_value,
                        "new": r.new_value,
                        "by": r.changed_by,
                        "at": r.changed_at.isoformat(),
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return
    table = Table("when", "who", "option", "old", "new", box=None)
    for r in rows:
        table.add_row(
            f"{r.changed_at:%Y-%m-%d %H:%M:%S %Z}",
            r.changed_by,
            escape(f"[{r.section}] {r.name}"),
            r.old_value or "",
            r.new_value or "",
        )
    out.print(table)


def reference_markdown() -> str:
    """The option reference table of the README (generated; a test keeps them equal)."""
    from gim_tasks.options.registry import OPTIONS

    lines = ["| section | option | type / allowed | default | meaning |", "|---|---|---|---|---|"]
    for spec in OPTIONS:
        default = f"`{spec.default}`" if spec.default else "(empty)"
        lines.append(
            f"| `[{spec.section}]` | `{spec.name}` | {spec.type.allowed} | {default} "
            f"| {spec.description} |"
        )
    return "\n".join(lines) + "\n"


@app.command("reference")
def reference() -> None:
    """Print the option reference as a Markdown table (the README's copy is generated)."""
    print(reference_markdown(), end="")


__all__ = ["app", "reference_markdown"]
