"""What the page and API routes share (:mod:`gim_tasks.web.pages`, :mod:`gim_tasks.web.api`):
path types, errors, and the :class:`Kit` built once by :func:`gim_tasks.web.app.create_app`
with the helpers that render pages and admit runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

from fastapi import Path as FastApiPath
from fastapi.templating import Jinja2Templates
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException

from gim_tasks.settings import Settings
from gim_tasks.web import schemas as sc
from gim_tasks.web.schemas import errors

#: Path ids: bigint in PostgreSQL, so 1 .. 2**63 - 1 (larger ones are a 422, never a 500).
RunId = Annotated[int, FastApiPath(ge=1, le=sc.MAX_ID, description="Run id.")]
SubscriptionId = Annotated[int, FastApiPath(ge=1, le=sc.MAX_ID, description="Subscription id.")]
#: Every authenticated operation may answer these.
AUTH = errors(401, 403)
#: History's page size unless ?limit= says otherwise; the API's largest offset.
HISTORY_PAGE = 50
MAX_OFFSET = 10_000_000


class ApiError(HTTPException):
    """An error answered as ``{"error": message}`` on /api and as a page elsewhere."""


class LoginRequired(Exception):
    def __init__(self, target: str) -> None:
        self.target = target


@dataclass(frozen=True)
class Kit:
    """The app's engine, settings and templates, and the helpers the routes call (who may
    call a route: :mod:`gim_tasks.web.access`)."""

    engine: Engine
    settings: Settings
    templates: Jinja2Templates
    throttle: Any
    hash_slots: Any
    page: Callable[..., Any]
    back: Callable[..., Any]
    admit: Callable[..., Any]
    gim_error: Callable[..., ApiError]
    known_option: Callable[..., tuple[str, str]]
    startable: Callable[..., list[tuple[str, bool]]]
    option_rows: Callable[[], tuple[list[dict[str, Any]], Any]]
    redis: Callable[[], Any]  # the app's Redis client (made on first use)


def text(value: Enum | None) -> str | None:
    """An enumerated parameter as the plain text the views take."""
    return None if value is None else str(value.value)


def plain_days(request: Any, *names: str) -> None:
    """Date query parameters written as days: pydantic also takes a bare number for a date
    (Unix time), which no caller means; refused with 400 naming the form."""
    import re

    for name in names:
        raw = request.query_params.get(name)
        if raw and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            raise ApiError(400, f"{name} must be a day YYYY-MM-DD, not '{raw}'")


def safe_next(target: str) -> str:
    """Only local paths after login (no open redirect to another site)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/jobs/scheduled"
