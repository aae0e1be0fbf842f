"""What the page and API routes share (:mod:`gim_tasks.web.pages`, :mod:`gim_tasks.web.api`):
path types, errors, and the :class:`Kit` built once by :func:`gim_tasks.web.app.create_app`
with the helpers that render pages and admit runs."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi import Path as FastApiPath
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException

from gim_tasks.schedule.jobs import JOBS
from gim_tasks.settings import Settings
from gim_tasks.web import schemas as sc
from gim_tasks.web.auth import Principal
from gim_tasks.web.schemas import errors

#: Path ids: bigint in PostgreSQL, so 1 .. 2**63 - 1 (larger ones are a 422, never a 500).
RunId = Annotated[int, FastApiPath(ge=1, le=sc.MAX_ID, description="Run id.")]
SubscriptionId = Annotated[int, FastApiPath(ge=1, le=sc.MAX_ID, description="Subscription id.")]
#: Every text of a body is stored: PostgreSQL cannot store a NUL byte (app.py's handler).
NUL = "text with a NUL byte, which PostgreSQL cannot store."
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


class Kit:
    """What every route shares, built once by :func:`gim_tasks.web.app.create_app` and kept in
    ``app.state.kit``; a route receives it as a parameter ``kit: KitDep`` (a FastAPI
    dependency). Who may call a route: :mod:`gim_tasks.web.access`."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        templates: Jinja2Templates,
        throttle: Any,
        hash_slots: Any,
    ) -> None:
        self.engine, self.settings, self.templates = engine, settings, templates
        self.throttle, self.hash_slots = throttle, hash_slots
        self._redis: Any = None

    def redis(self) -> Any:
        """The app's Redis client (made on first use)."""
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(self.settings.redis_url, socket_timeout=5)
        return self._redis

    def tz_name(self) -> str:
        from gim_tasks.web import views

        return views.schedule_zone(self.engine)

    @staticmethod
    def known_option(section: Enum, name: Enum) -> tuple[str, str]:
        """The option's section and name as text; a 404 when the section has no such name."""
        from gim_tasks.options.registry import BY_KEY, OPTIONS

        key = (str(section.value), str(name.value))
        if key not in BY_KEY:
            names = ", ".join(spec.name for spec in OPTIONS if spec.section == key[0])
            raise ApiError(404, f"[{key[0]}] has no option '{key[1]}'; its options are {names}")
        return key

    @staticmethod
    def startable(who: Principal) -> list[tuple[str, bool]]:
        """Run Job's choices: (job, needs force). Operators start the jobs M7 lets anyone run
        by hand; admins also the others, forced."""
        return [(job.name, not job.manual) for job in JOBS if job.manual or who.may("admin")]

    def page(self, request: Request, name: str, who: Principal, **context: Any) -> Response:
        from gim_tasks.web import views

        # The summary strip's period (A4) is the page's ``days`` unless the page says otherwise
        # (the Days grid's ``days`` is its row count, not the strip's period).
        days = context.pop("summary_days", None) or _days(request.query_params.get("days"))
        context.setdefault("notice", request.session.pop("notice", None))
        return self.templates.TemplateResponse(
            request,
            name,
            {
                "user": who,
                "csrf": request.session.get("csrf", ""),
                "tz": context.pop("tz", None) or self.tz_name(),
                "summary": views.summary(self.engine, days),
                "path": request.url.path,
                **context,
            },
        )

    @staticmethod
    def back(request: Request, target: str, notice: str) -> Response:
        request.session["notice"] = notice
        return RedirectResponse(target, status_code=303)

    def admit(self, job: str, params: str, force: bool, who: Principal) -> Any:
        """Request a run as ``who`` through the one admission (M0), sent to a worker when
        admitted."""
        from gim_tasks.runtime.dispatch import request_and_send
        from gim_tasks.schedule.admission import Via

        if force and not who.may("admin"):
            raise ApiError(403, "forcing a run (M7) needs the admin role")
        return request_and_send(self.engine, job, who.name, params, force, via=Via.API)

    def option_rows(self) -> tuple[list[dict[str, Any]], Any]:
        """Every option with its value, default, description and last changer; the check."""
        from gim_tasks.options import store
        from gim_tasks.options.registry import OPTIONS
        from gim_tasks.runtime.health import check_deployment

        with self.engine.connect() as conn:
            options = store.load_options(conn)
        report = check_deployment(options, self.settings)
        rows = [
            {
                "section": spec.section,
                "name": spec.name,
                "value": options.texts[spec.key],
                "default": spec.default,
                "stored": spec.key in options.stored,
                "description": spec.description,
                "allowed": spec.type.allowed,
                "changed_by": options.changes[spec.key].actor
                if spec.key in options.changes
                else "",
            }
            for spec in OPTIONS
        ]
        return rows, report


def _kit(request: Request) -> Kit:
    kit: Kit = request.app.state.kit
    return kit


#: A route's parameter ``kit: KitDep``: the app's :class:`Kit`, from ``app.state``.
KitDep = Annotated[Kit, Depends(_kit)]


def _days(text: str | None) -> int:
    try:
        return min(max(int(text or 7), 1), 366)
    except ValueError:
        return 7


def day_query(description: str, alias: str | None = None) -> Any:
    """A query parameter that is a local day ``YYYY-MM-DD`` (its pattern in the document)."""
    from fastapi import Query

    return Query(
        alias=alias, description=description, json_schema_extra={"pattern": sc.DAY_PATTERN}
    )


def iso_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row for a JSON answer: its instants as ISO text, as the document says."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


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
