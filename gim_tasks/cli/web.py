"""``gim web``, ``gim user``, ``gim token`` and ``gim notify``: the Monitor Jobs web app, its
users and roles (SPEC A5), API tokens, and notification subscriptions (A3)."""

from __future__ import annotations

import getpass
import json
import sys
from typing import Annotated

import typer

from gim_tasks.cli.common import ActorOption, JsonFlag, current_actor, mart_engine, out, settings
from gim_tasks.errors import GimError
from gim_tasks.lifecycle import ROLES

# The web app, users (argon2), notifications and rich are imported inside the commands.

user_app = typer.Typer(
    rich_markup_mode=None,
    help="Users of the web app and API, and their roles.",
    no_args_is_help=True,
)
token_app = typer.Typer(
    rich_markup_mode=None, help="API tokens (Authorization: Bearer).", no_args_is_help=True
)
notify_app = typer.Typer(
    rich_markup_mode=None,
    help="E-mail notifications of run ends per job (A3).",
    no_args_is_help=True,
)

RoleOption = Annotated[
    str,
    typer.Option(
        "--role",
        help=f"Role: {', '.join(ROLES)} (viewer reads; operator runs, "
        "stops and cancels; admin also edits options and notifications).",
    ),
]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from standard input (first line) instead of a prompt, for scripts.",
    ),
]


#: Seconds an idle keep-alive connection stays open (longer than common proxies' 60 s).
KEEP_ALIVE_SECONDS = 65


def web_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Web worker processes.")] = 1,
) -> None:
    """Serve the Monitor Jobs web app and the JSON API (/api, docs at /api/docs). Refuses to
    start without a strong GIM_WEB_SECRET (`gim web-secret` makes one)."""
    import uvicorn

    from gim_tasks import logs
    from gim_tasks.web.security import check_web_secret

    config = settings()
    check_web_secret(config.web_secret)
    if logs.log_format() != "json":  # JSON lines only: uvicorn logs where it listens
        out.print(f"Monitor Jobs on http://{host}:{port} (API docs: /api/docs)", markup=False)
    uvicorn.run(
        "gim_tasks.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=config.log_level.lower(),
        # X-Forwarded-For only from GIM_WEB_TRUSTED_PROXIES, applied by the app itself
        # (uvicorn's default would trust it from any loopback peer).
        proxy_headers=False,
        # An idle keep-alive connection is closed after 65 s, not uvicorn's 5 s: a client
        # (a browser, Prometheus every 15 s, a proxy pooling connections with its own idle
        # timeout, commonly 60 s) that sends on a connection the server is closing that moment
        # gets no answer at all (the load bench's one error, issue 40).
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        # O6: JSON lines for the server's log and the access log
        log_config=(
            logs.uvicorn_config(config.log_level)
            if logs.log_format() == "json"
            else uvicorn.config.LOGGING_CONFIG
        ),
    )


def web_secret_command() -> None:
    """Print a new random key for GIM_WEB_SECRET (48 random bytes, URL-safe). Give every web
    replica the same key; changing it ends every session's cookie."""
    import secrets

    print(secrets.token_urlsafe(48))


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise GimError("--password-stdin: standard input has no password line")
        return line
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise GimError("the two passwords differ; nothing changed")
    return first


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, _ . @ -).")],
    role: RoleOption = "viewer",
    email: Annotated[
        str | None, typer.Option("--email", help="Where this user's notifications go.")
    ] = None,
    password_stdin: PasswordStdin = False,
    actor: ActorOption = "",
) -> None:
    """Add a user. The password comes from a prompt (or --password-stdin) and is stored as an
    argon2 hash."""
    from gim_tasks.web import auth

    auth.check_name(name)
    auth.check_role(role)
    password = _password(password_stdin)
    auth.add_user(mart_engine(), name, role, password, actor or current_actor(), email)
    out.print(f"user {name} added with role {role}", markup=False)


@user_app.command("update")
def user_update(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[
        str | None, typer.Option("--role", help=f"New role: {', '.join(ROLES)}.")
    ] = None,
    email: Annotated[
        str | None, typer.Option("--email", help="New e-mail address ('' removes it).")
    ] = None,
    password: Annotated[
        bool, typer.Option("--password", help="Set a new password (prompted).")
    ] = False,
    password_stdin: PasswordStdin = False,
    keep_tokens: Annotated[
        bool,
        typer.Option(
            "--keep-tokens", help="With a new password: keep the user's API tokens valid."
        ),
    ] = False,
) -> None:
    """Change a user's role, e-mail address or password. A new role or password ends every
    web session of the user at once; a new password also revokes their API tokens unless
    --keep-tokens."""
    from gim_tasks.web import auth

    secret = _password(password_stdin) if (password or password_stdin) else None
    ended = auth.update_user(
        mart_engine(),
        name,
        role=role,
        password=secret,
        email=email,
        keep_tokens=keep_tokens,
        actor=current_actor(),
    )
    out.print(
        f"user {name} updated ({ended['sessions']} session(s) ended, {ended['tokens']} "
        "token(s) revoked)",
        markup=False,
    )


@user_app.command("remove")
def user_remove(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Remove a user, their sessions and their API tokens."""
    from gim_tasks.web import auth

    auth.remove_user(mart_engine(), name, current_actor())
    out.print(f"user {name} removed", markup=False)


@user_app.command("list")
def user_list(as_json: JsonFlag = False) -> None:
    """Users, roles and e-mail addresses."""
    from rich.table import Table

    from gim_tasks.web import auth

    users = auth.list_users(mart_engine())
    if as_json:
        print(json.dumps(users, default=str, indent=2))
        return
    table = Table("name", "role", "e-mail", "created", "by", box=None)
    for u in users:
        table.add_row(
            u["name"],
            u["role"],
            u["email"] or "-",
            f"{u['created_at']:%Y-%m-%d %H:%M}",
            u["created_by"],
        )
    out.print(table)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="The user the token acts as.")],
    label: Annotated[str, typer.Option(help="What the token is for.")] = "api",
    expires_days: Annotated[
        int | None,
        typer.Option(
            "--expires-days",
            min=1,
            max=3660,
            help="Valid for this many days (default: until revoked).",
        ),
    ] = None,
) -> None:
    """Create an API token for a user and print it (only now: it is stored hashed). Send it as
    ``Authorization: Bearer <token>``; it has the user's role. A new password of the user
    revokes it (unless `gim user update --keep-tokens`)."""
    from gim_tasks.web import auth

    limit = settings().web_token_max_days
    print(
        auth.create_token(
            mart_engine(), name, label, expires_days, max_days=limit, actor=current_actor()
        )
    )


@token_app.command("list")
def token_list(
    name: Annotated[str | None, typer.Argument(help="Only this user's tokens.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """API tokens (never the tokens themselves): id, user, label, created, last used,
    expires."""
    from rich.table import Table

    from gim_tasks.web import auth

    tokens = auth.list_tokens(mart_engine(), name)
    if as_json:
        print(json.dumps(tokens, default=str, indent=2))
        return
    table = Table("id", "user", "label", "created", "last used", "expires", box=None)
    for t in tokens:
        used, expires = t["last_used_at"], t["expires_at"]
        table.add_row(
            str(t["id"]),
            t["user"],
            t["label"],
            f"{t['created_at']:%Y-%m-%d %H:%M}",
            f"{used:%Y-%m-%d %H:%M}" if used else "-",
            f"{expires:%Y-%m-%d %H:%M}" if expires else "never",
        )
    out.print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="Token id (gim token list).")],
) -> None:
    """Revoke an API token at once."""
    from gim_tasks.web import auth

    auth.revoke_token(mart_engine(), token_id, current_actor())
    out.print(f"token {token_id} revoked", markup=False)


@notify_app.command("add")
def notify_add(
    job: Annotated[str, typer.Argument(help="Job name.")],
    recipient: Annotated[str, typer.Argument(help="A user name or an e-mail address.")],
    on_success: Annotated[
        bool, typer.Option("--on-success/--no-on-success", help="Send when the run completes.")
    ] = True,
    on_error: Annotated[
        bool, typer.Option("--on-error/--no-on-error", help="Send when it fails or is stopped.")
    ] = True,
    actor: ActorOption = "",
) -> None:
    """Subscribe a recipient to a job's run ends (or change an existing subscription)."""
    from gim_tasks.monitor import notify

    notify.add_subscription(
        mart_engine(), job, recipient, on_success, on_error, actor or current_actor()
    )
    out.print(f"{recipient} is notified of {job}", markup=False)


@notify_app.command("remove")
def notify_remove(subscription_id: Annotated[int, typer.Argument(help="Subscription id.")]) -> None:
    """Remove a subscription."""
    from gim_tasks.monitor import notify

    notify.remove_subscription(mart_engine(), subscription_id, current_actor())
    out.print(f"subscription {subscription_id} removed", markup=False)


@notify_app.command("list")
def notify_list(as_json: JsonFlag = False) -> None:
    """Subscriptions: job, recipient, on success, on error."""
    from rich.table import Table

    from gim_tasks.monitor import notify

    rows = notify.list_subscriptions(mart_engine())
    if as_json:
        print(json.dumps(rows, default=str, indent=2))
        return
    table = Table("id", "job", "recipient", "success", "error", "by", box=None)
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["job"],
            r["recipient"],
            "yes" if r["on_success"] else "no",
            "yes" if r["on_error"] else "no",
            r["created_by"],
        )
    out.print(table)


@notify_app.command("send")
def notify_send() -> None:
    """Send every due notification mail now, in this process (the workers do this on their
    own; for operators checking SMTP settings)."""
    from gim_tasks.monitor import notify

    sent, pending = notify.deliver(mart_engine(), settings())
    out.print(f"{sent} mail(s) sent, {pending} still pending after a failed attempt", markup=False)
    if pending:
        raise typer.Exit(1)
