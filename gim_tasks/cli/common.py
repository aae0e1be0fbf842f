"""Helpers shared by the ``gim`` command groups.

The command line must answer at once (issue "A command line that answers at once"): every
``gim`` module imports only typer and light modules at load time; what a command needs
(SQLAlchemy, the settings, Celery, the web app, the job bodies, even rich) is imported inside
the command. ``tests/integration/test_cli_imports.py`` holds each command to it.
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.engine import Engine

    from gim_tasks.settings import Settings


_console: list[Console] = []


def console() -> Console:
    """rich's Console, made on first use: ``gim version`` and ``gim --help`` never load it."""
    if not _console:
        from rich.console import Console

        # Not a terminal (pipes, CI logs): wide lines rather than wrapped cells.
        _console.append(Console(width=None if sys.stdout.isatty() else 160, highlight=False))
    return _console[0]


class _Console:
    """``out.print(...)`` and friends on :func:`console`; pass ``console()`` where rich wants
    the Console object itself (a Progress, a Live display)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(console(), name)


out: Console = _Console()  # type: ignore[assignment]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def current_actor() -> str:
    """Who is acting (M8): GIM_ACTOR, else the login name."""
    try:
        return os.environ.get("GIM_ACTOR") or getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no passwd entry
        return "unknown"


ActorOption = Annotated[
    str,
    typer.Option("--actor", help="Who makes the change (default: $GIM_ACTOR or your login name)."),
]


def mart_engine() -> Engine:
    """An engine for the Info Mart of GIM_DATABASE_URL."""
    from gim_tasks.db.engine import make_engine
    from gim_tasks.settings import get_settings

    return make_engine(get_settings().database_url)


def settings() -> Settings:
    """The process settings (``GIM_*``), loaded on first use."""
    from gim_tasks.settings import get_settings

    return get_settings()
