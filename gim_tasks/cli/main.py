"""gim: the operator's command line.

Every command prints a one-line message on error (never a traceback; GIM_DEBUG=1 shows it)
and exits non-zero.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Annotated

import typer

from gim_tasks import __version__
from gim_tasks.cli import backfill as backfill_cli
from gim_tasks.cli import config as config_cli
from gim_tasks.cli import etl as etl_cli
from gim_tasks.cli import holds as holds_cli
from gim_tasks.cli import monitor as monitor_cli
from gim_tasks.cli import runs as runs_cli
from gim_tasks.cli import schedule as schedule_cli
from gim_tasks.cli import web as web_cli
from gim_tasks.cli.common import JsonFlag, current_actor, mart_engine, out, settings
from gim_tasks.errors import GimError

# Help is plain click text (rich_markup_mode=None everywhere): rich's help panels cost
# 150 ms at every `gim --help` (issue 25).
app = typer.Typer(
    rich_markup_mode=None,
    help=__doc__,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(
    rich_markup_mode=None, help="Database schema: migrate and check.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(config_cli.app, name="config")
app.add_typer(schedule_cli.app, name="schedule")
app.add_typer(etl_cli.idb_app, name="idb")
app.add_typer(etl_cli.etl_app, name="etl")
app.add_typer(etl_cli.export_app, name="export")
app.add_typer(etl_cli.aggregate_app, name="aggregate")
app.add_typer(web_cli.user_app, name="user")
app.add_typer(web_cli.token_app, name="token")
app.add_typer(web_cli.notify_app, name="notify")
app.command("web")(web_cli.web_command)
app.command("web-secret")(web_cli.web_secret_command)
app.command("run")(runs_cli.run_command)
app.command("stop")(runs_cli.stop_command)
app.command("cancel")(runs_cli.cancel_command)
app.command("jobs")(runs_cli.jobs_command)
app.command("pause")(holds_cli.pause_command)
app.command("resume")(holds_cli.resume_command)
app.command("skip")(holds_cli.skip_command)
app.add_typer(holds_cli.blackout_app, name="blackout")
app.command("holds")(holds_cli.holds_command)
app.add_typer(backfill_cli.app, name="backfill")
app.command("firings")(monitor_cli.firings_command)
app.add_typer(monitor_cli.alerts_app, name="alerts")
app.command("note")(monitor_cli.note_command)
app.command("audit")(monitor_cli.audit_command)
app.command("days")(monitor_cli.days_command)
app.command("checks")(monitor_cli.checks_command)
app.add_typer(monitor_cli.check_app, name="check")
app.command("watchdog")(monitor_cli.watchdog_command)
app.add_typer(monitor_cli.webhook_app, name="webhook")
_passthrough = {"allow_extra_args": True, "ignore_unknown_options": True}
app.command("worker", context_settings=_passthrough)(runs_cli.worker_command)
app.command("beat", context_settings=_passthrough)(runs_cli.beat_command)


@app.command()
def version() -> None:
    """Print the gim-tasks version."""
    print(__version__)  # plain print: rich is not needed to say a version


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Check the Info Mart, every IDB, Redis and the schema migration.

    Exit code 0 when everything is up and current, 1 otherwise.
    """
    from rich.table import Table

    from gim_tasks.status import run_checks

    checks = run_checks(settings())
    if as_json:
        print(
            json.dumps(
                {"ok": all(c.ok for c in checks), "checks": [c.as_dict() for c in checks]}, indent=2
            )
        )
    else:
        table = Table(box=None)
        for column in ("item", "where", "state"):
            table.add_column(column, no_wrap=True)
        table.add_column("detail")
        for check in checks:
            state = "[green]up[/]" if check.ok else "[red]DOWN[/]"
            detail = check.detail + (
                f" [yellow](warning: {check.warning})[/]" if check.warning else ""
            )
            table.add_row(check.item, check.target, state, detail)
        out.print(table)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Migrate the Info Mart database to the newest schema (or to --revision).

    Safe to run from several processes at once (an advisory lock serialises them).
    """
    from gim_tasks.db import migrate

    state = migrate.upgrade(mart_engine(), revision, current_actor())
    out.print(f"schema {state.describe()}")


@db_app.command("grant-web")
def db_grant_web(
    role: Annotated[str, typer.Argument(help="An existing login role for the web app.")],
) -> None:
    """Give ROLE exactly what the web app needs (read runs and options, record manager
    operations, edit options and subscriptions; nothing on facts, staging or aggregates).
    Run as the schema owner after every upgrade; idempotent."""
    from gim_tasks.db.roles import grant_web

    statements = grant_web(mart_engine(), role, current_actor())
    out.print(f"{role}: {len(statements)} grant/revoke statements applied", markup=False)


@db_app.command("check")
def db_check(as_json: JsonFlag = False) -> None:
    """Say whether the database schema is at head. Exit code 1 when it is not."""
    from gim_tasks.db import migrate

    state = migrate.schema_state(mart_engine())
    if as_json:
        print(json.dumps({"current": state.current, "head": state.head, "at_head": state.at_head}))
    else:
        out.print(f"schema {state.describe()}")
    if not state.at_head:
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gim`` script: runs the command, turns errors into one line."""
    debug = os.environ.get("GIM_DEBUG") == "1"
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING)
    try:
        # Standalone mode: click prints usage errors itself and exits through SystemExit.
        app(args=argv, prog_name="gim")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except Exception as error:
        if debug:
            raise
        message, code = _describe(error)
        print(f"error: {message}", file=sys.stderr)
        return code
    return 0


def _describe(error: Exception) -> tuple[str, int]:
    if isinstance(error, GimError):
        return str(error), error.exit_code
    # Only a command that loaded SQLAlchemy or redis can raise their errors: no import here.
    sa_exc, redis_module = sys.modules.get("sqlalchemy.exc"), sys.modules.get("redis")
    if sa_exc is not None and isinstance(error, sa_exc.OperationalError):
        from gim_tasks.db.engine import connection_problem

        return f"database unreachable: {connection_problem(error)}", 3
    if redis_module is not None and isinstance(error, redis_module.RedisError):
        return f"Redis unreachable: {str(error).splitlines()[0]}", 3
    logging.getLogger("gim_tasks").exception("unexpected error")
    return f"unexpected {type(error).__name__}: {error} (run with GIM_DEBUG=1 for details)", 1


if __name__ == "__main__":
    sys.exit(main())
