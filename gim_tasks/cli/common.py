"""Helpers shared by the ``gim`` command groups."""

from __future__ import annotations

import getpass
import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.engine import Engine

from gim_tasks.db.engine import make_engine
from gim_tasks.settings import get_settings

# Not a terminal (pipes, CI logs): wide lines rather than wrapped cells.
out = Console(width=None if sys.stdout.isatty() else 160, highlight=False)
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
    return make_engine(get_settings().database_url)
