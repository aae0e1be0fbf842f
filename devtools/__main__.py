"""``python -m devtools``: the Python half of ``./dev`` (see ``./dev help``)."""

from __future__ import annotations

import os
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from devtools.localstack import port_open
from devtools.stack import DEV_WEB_PASSWORD, DEV_WEB_USER, DevStack
from gim_tasks.errors import GimError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from devtools.supervisor import Supervisor

# The database, web and mail modules are imported by the commands that use them: `./dev env`
# and `./dev gim` (which runs `env` first) start in a fraction of the time (issue 31).

CELERY_APP = "gim_tasks.runtime.celery_app"

cli = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
services = typer.Typer(help="Local PostgreSQL and Redis.", no_args_is_help=True)
cli.add_typer(services, name="services")


def _print_urls(stack: DevStack) -> None:
    env = stack.environment()
    for key in ("GIM_DATABASE_URL", "GIM_IDB_URLS", "GIM_REDIS_URL"):
        print(f"{key}={env[key]}")


@services.command("start")
def services_start() -> None:
    """Start PostgreSQL and Redis (data under .local/) and print their URLs."""
    stack = DevStack.from_env()
    started = stack.start()
    print(f"started: {', '.join(started) or 'nothing (already running)'}")
    _print_urls(stack)


@services.command("stop")
def services_stop() -> None:
    """Stop the local PostgreSQL and Redis."""
    DevStack.from_env().stop()
    print("stopped")


@services.command("status")
def services_status() -> None:
    """Say whether the local PostgreSQL and Redis run; exit 1 if either does not."""
    stack = DevStack.from_env()
    pg = stack.postgres.initialised() and stack.postgres.running()
    redis = stack.redis.running()
    print(f"postgres: {'running' if pg else 'stopped'} (port {stack.pg_port})")
    print(f"redis:    {'running' if redis else 'stopped'} (port {stack.redis_port})")
    _print_urls(stack)
    if not (pg and redis):
        raise typer.Exit(1)


@cli.command("env")
def env() -> None:
    """Print `export` lines for the local stack: eval "$(./dev env)" then use `gim`."""
    for key, value in DevStack.from_env().environment().items():
        print(f"export {key}={shlex.quote(value)}")


def demo_web_user(engine: sa.Engine, supervisor: Supervisor) -> None:
    """The demo admin, subscribed to maintenance and export mails (printed by the SMTP sink)."""
    from gim_tasks.monitor import notify
    from gim_tasks.web import auth

    if not any(user["name"] == DEV_WEB_USER for user in auth.list_users(engine)):
        auth.add_user(
            engine, DEV_WEB_USER, "admin", DEV_WEB_PASSWORD, "dev-demo", "admin@localhost"
        )
        for job in ("Job_MaintainGIM", "Job_ExportGIM"):
            notify.add_subscription(engine, job, DEV_WEB_USER, True, True, "dev-demo")
        supervisor.say(
            "dev", f"demo web user {DEV_WEB_USER} added (notified of maintenance, export)"
        )


@cli.command("up")
def up() -> None:
    """Run the whole system locally in the foreground; Ctrl-C stops everything."""
    from devtools.demo import demo_options
    from devtools.supervisor import Supervisor
    from gim_tasks.db import migrate
    from gim_tasks.db.engine import make_engine
    from gim_tasks.idb.schema import init_idb
    from gim_tasks.options.store import import_options

    stack = DevStack.from_env()
    flower_port = int(os.environ.get("GIM_DEV_FLOWER_PORT", "5555"))
    for port, what, variable in (
        (flower_port, "Flower", "GIM_DEV_FLOWER_PORT"),
        (stack.web_port, "the web app", "GIM_DEV_WEB_PORT"),
        (stack.smtp_port, "the SMTP sink", "GIM_DEV_SMTP_PORT"),
    ):
        if port_open(port):
            raise GimError(f"port {port} ({what}) is taken: stop what uses it, or set {variable}")
    started = stack.start()
    environment = {
        **os.environ,
        **stack.environment(),
        "PYTHONUNBUFFERED": "1",
        "FLOWER_UNAUTHENTICATED_API": "false",
        "FLOWER_BASIC_AUTH": "{GIM_FLOWER_USER}:{GIM_FLOWER_PASSWORD}".format(
            **stack.environment()
        ),
    }
    os.environ.update(stack.environment())
    supervisor = Supervisor(environment)
    try:
        engine = make_engine(stack.environment()["GIM_DATABASE_URL"])
        state = migrate.upgrade(engine)
        supervisor.say("dev", f"schema {state.describe()}")
        if os.environ.get("GIM_DEV_KEEP_OPTIONS") != "1":
            text = demo_options(datetime.now(UTC))
            changed = import_options(engine, text, "dev-demo", "demo options")
            supervisor.say(
                "dev",
                f"demo options loaded ({len(changed)} change(s); "
                "GIM_DEV_KEEP_OPTIONS=1 keeps yours)",
            )
        demo_web_user(engine, supervisor)
        (stack.local_dir / "output" / "output").mkdir(parents=True, exist_ok=True)
        for url in stack.environment()["GIM_IDB_URLS"].split(","):
            init_idb(make_engine(url))
        supervisor.say("dev", "IDB schemas ready; live traffic from `gim idb simulate`")
        celery = str(Path(sys.executable).with_name("celery"))
        gim = str(Path(sys.executable).with_name("gim"))
        supervisor.start("beat", [gim, "beat"])
        supervisor.start(
            "worker", [gim, "worker", "--concurrency", "4", "--hostname", "worker1@%h"]
        )
        supervisor.start("traffic", [gim, "idb", "simulate", "--rate", "1800", "--writers", "3"])
        supervisor.start(
            "mail",
            [
                str(Path(sys.executable).with_name("aiosmtpd")),
                "-n",
                "-l",
                f"127.0.0.1:{stack.smtp_port}",
            ],
        )
        # The web app runs as its least-privilege role, as in production (`gim db grant-web`).
        supervisor.start(
            "web",
            [gim, "web", "--port", str(stack.web_port)],
            env={"GIM_DATABASE_URL": web_role_url(engine, stack.environment()["GIM_DATABASE_URL"])},
        )
        supervisor.start(
            "flower",
            [celery, "-A", CELERY_APP, "flower", "--address=127.0.0.1", f"--port={flower_port}"],
        )
        env = stack.environment()
        supervisor.say(
            "dev",
            f"Flower: http://127.0.0.1:{flower_port} "
            f"(user {env['GIM_FLOWER_USER']}, password {env['GIM_FLOWER_PASSWORD']})",
        )
        supervisor.say(
            "dev",
            f"Monitor Jobs: http://127.0.0.1:{stack.web_port} (user {DEV_WEB_USER}, "
            f"password {DEV_WEB_PASSWORD}); notification mails are printed by 'mail'",
        )
        supervisor.say(
            "dev", f"Info Mart: {env['GIM_DATABASE_URL']}  Redis: {env['GIM_REDIS_URL']}"
        )
        supervisor.say("dev", 'other shell: eval "$(./dev env)"; gim status.  Ctrl-C stops all.')
        code = supervisor.wait()
    finally:
        supervisor.stop_all()
        stack.stop(started)
        supervisor.say("dev", f"stopped {', '.join(started) or 'processes'}; nothing left running")
    raise typer.Exit(code)


WEB_ROLE = "gim_web"


def web_role_url(engine: sa.Engine, owner_url: str) -> str:
    """The local cluster's web role (created once; trust authentication on loopback), granted
    exactly the web app's privileges; the URL the web app connects with."""
    import sqlalchemy as sa

    from gim_tasks.db.roles import grant_web

    with engine.begin() as conn:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": WEB_ROLE}
        ).scalar_one_or_none()
        if exists is None:
            conn.execute(sa.text(f"CREATE ROLE {WEB_ROLE} LOGIN"))
    grant_web(engine, WEB_ROLE)
    scheme, rest = owner_url.split("://", 1)
    return f"{scheme}://{WEB_ROLE}@{rest.split('@', 1)[1]}"


@cli.command("reliability")
def reliability(
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="One round per scenario, without beat-down, stale-data and "
            "sigkill-worker-retries: fits in CI.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    scenario: Annotated[
        list[str] | None,
        typer.Option("--scenario", help="Run only this scenario (repeatable)."),
    ] = None,
    lanes: Annotated[
        int,
        typer.Option(
            "--lanes", min=1, max=4, help="Scenarios run at once, each lane on its own servers."
        ),
    ] = 2,
) -> None:
    """Fault scenarios against a real local stack; exit code 1 if any loses, duplicates,
    overlaps, double-fires or leaves a run stuck."""
    from rich.console import Console
    from rich.table import Table

    from devtools import reliability as suite

    names = scenario or [
        name for name in suite.SCENARIOS if not (quick and name in suite.FULL_ONLY)
    ]
    unknown = [name for name in names if name not in suite.SCENARIOS]
    if unknown:
        raise GimError(
            f"unknown scenario {', '.join(unknown)}; scenarios are {', '.join(suite.SCENARIOS)}"
        )
    console = Console(stderr=True)
    results = suite.run(
        names, full=not quick, say=lambda text: console.print(text, markup=False), lanes=lanes
    )
    if as_json:
        print(suite.as_json(results))
    else:
        table = Table(
            "scenario",
            "cycles",
            "expected",
            "facts",
            "missing",
            "duplicates",
            "differ",
            "stuck",
            "overlaps",
            "double firings",
            "agg. mismatches",
            "export errors",
            "faults mid-run",
            "s",
            "ok",
        )
        for r in results:
            table.add_row(
                r.scenario,
                *(
                    str(v)
                    for v in (
                        r.cycles,
                        r.expected,
                        r.facts,
                        r.missing,
                        r.duplicates,
                        r.differ,
                        r.stuck,
                        r.overlaps,
                        r.double_firings,
                        r.aggregate_mismatches,
                        r.export_errors,
                        f"{r.faults_mid_run}/{r.faults}",
                        r.seconds,
                    )
                ),
                "yes" if r.ok else "NO",
            )
        Console(width=200).print(table)
        for r in results:
            for note in r.notes + ([r.error] if r.error else []):
                print(f"{r.scenario}: {note}")
        for line in suite.recovery_lines(results):
            print(line)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def main() -> int:
    try:
        cli(prog_name="./dev")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 0
    except GimError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
