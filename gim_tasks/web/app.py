"""The Monitor Jobs web app and its JSON API (SPEC §7).

Server-rendered pages (Jinja templates, no JavaScript; :mod:`gim_tasks.web.pages`) and a JSON
API under ``/api`` with OpenAPI docs (:mod:`gim_tasks.web.api`). Both sit on the same manager
operations as the CLI and ``celery call`` (``gim_tasks.runtime.manager``), so the rules cannot
differ between them. This module assembles them: middleware, error handlers, the helpers the
routes share (:class:`~gim_tasks.web.kit.Kit`).

Security (A5):
* Every route but ``/login``, ``/healthz`` and ``/static`` depends on a role type of
  :mod:`gim_tasks.web.access`, which checks the caller's role; a test enumerates the routes and
  fails on any route without a check.
* Browsers log in with a password (argon2) and get a signed session cookie (HttpOnly,
  SameSite=Lax, Secure when GIM_WEB_BASE_URL is https). Every state-changing request made
  with that cookie carries the session's CSRF token (form field ``csrf`` or header
  ``X-CSRF-Token``), compared in constant time.
* Scripts send ``Authorization: Bearer <token>``; a bearer request carries no ambient
  credentials, so it needs no CSRF token.
* Request bodies are limited to :data:`MAX_BODY` bytes; payload fields have length limits.
"""

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    JSONResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gim_tasks import __version__
from gim_tasks.db.engine import make_engine
from gim_tasks.db.tables import RUN_STATES
from gim_tasks.errors import Conflict, GimError, NotFound
from gim_tasks.options import store
from gim_tasks.options.registry import OPTIONS
from gim_tasks.runtime import manager
from gim_tasks.runtime.dispatch import request_and_send
from gim_tasks.runtime.health import check_deployment
from gim_tasks.schedule.admission import Via
from gim_tasks.schedule.jobs import CATEGORIES, JOB_NAMES, JOBS
from gim_tasks.schedule.localtime import zone
from gim_tasks.settings import Settings, get_settings
from gim_tasks.web import api, pages, views
from gim_tasks.web import schemas as sc
from gim_tasks.web.auth import Principal
from gim_tasks.web.kit import ApiError, Kit, LoginRequired
from gim_tasks.web.security import (
    HashSlots,
    LoginThrottle,
    SecurityHeaders,
    check_web_secret,
)

log = logging.getLogger("gim_tasks.web")

HERE = Path(__file__).parent
MAX_BODY = 64 * 1024


OPTION_KEYS = frozenset(spec.key for spec in OPTIONS)


class HeadAsGet:
    """HEAD on every GET route (RFC 9110 9.3.2): the GET's status and headers, no body. Other
    paths answer HEAD as they answer GET: 405 with Allow."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headless(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body"):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headless)


class BodyLimit:
    """Refuse request bodies above ``limit`` bytes (413), whether announced by
    Content-Length or streamed, before any route reads them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise ApiError(413, f"request body larger than {self.limit} bytes")
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(
            {"error": f"request body larger than {self.limit} bytes"}, status_code=413
        )
        await response({"type": "http"}, _empty_receive, send)


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b""}


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()
    secret = check_web_secret(settings.web_secret)  # refuses a missing, short or known key
    engine = engine or make_engine(settings.database_url)
    throttle = LoginThrottle(engine, settings.web_login_failures)
    hash_slots = HashSlots(settings.web_hash_slots)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """The watchdog thread (O2) runs while the app serves (``gim web``, uvicorn)."""
        watchdog = None
        if settings.watchdog_seconds:
            from gim_tasks.monitor.watchdog import Watchdog

            watchdog = Watchdog(engine, settings, settings.watchdog_seconds)
            watchdog.start()
        try:
            yield
        finally:
            if watchdog is not None:
                watchdog.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="gim-tasks Monitor Jobs API",
        version=__version__,
        description="Run, stop and follow the jobs of the Info Mart. Authenticate with "
        "`Authorization: Bearer <token>` (`gim token create NAME`). Errors are JSON "
        '`{"error": "..."}` with the statuses each operation declares; a 422 also lists the '
        "bad fields. Every GET also answers HEAD (same status and headers, no body); a method "
        "a path does not take is a 405 with `Allow`. Bodies are limited to 64 KiB (413).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.engine = engine
    app.state.settings = settings
    app.state.hash_slots = hash_slots
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(categories=CATEGORIES, jobs=JOB_NAMES, states=RUN_STATES)
    templates.env.filters["local"] = lambda value, tz: _local(value, tz)

    # ----- errors ----------------------------------------------------------------------------

    def _is_api(request: Request) -> bool:
        return request.url.path.startswith("/api") or request.url.path == "/metrics"

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        # The error's headers are kept: a 405 carries Allow (RFC 9110), a 401 WWW-Authenticate.
        headers = getattr(error, "headers", None)
        if error.status_code == 405:
            # Every method some route of this path takes (Starlette names only the first
            # route's: GET /api/runs and POST /api/runs are two routes).
            from starlette.routing import Match

            allowed = {
                method
                for route in app.router.routes
                if route.matches(request.scope)[0] != Match.NONE
                for method in getattr(route, "methods", None) or ()
            }
            if "GET" in allowed:
                allowed.add("HEAD")  # HeadAsGet
            headers = {**(headers or {}), "Allow": ", ".join(sorted(allowed))}
        if _is_api(request) or isinstance(error, ApiError) and error.status_code == 413:
            return JSONResponse(
                {"error": error.detail}, status_code=error.status_code, headers=headers
            )
        return templates.TemplateResponse(
            request,
            "error.html",
            {"status": error.status_code, "message": error.detail, "user": None},
            status_code=error.status_code,
            headers=headers,
        )

    @app.exception_handler(sa.exc.DataError)
    async def bad_data(request: Request, error: sa.exc.DataError) -> Response:
        """Values PostgreSQL cannot store (NUL bytes in text, out-of-range numbers): the
        caller's input, answered 400 with one line, never a 500."""
        problem = str(error.orig).splitlines()[0] if error.orig else "invalid value"
        message = f"invalid input: {problem}"
        if _is_api(request):
            return JSONResponse({"error": message}, status_code=400)
        return templates.TemplateResponse(
            request, "error.html", {"status": 400, "message": message, "user": None}, 400
        )

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, error: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={quote(error.target)}", status_code=303)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        details = [
            {
                "field": ".".join(str(part) for part in e["loc"] if part != "body"),
                "message": sc.readable(e),
            }
            for e in error.errors()
        ]
        text = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        return JSONResponse({"error": f"invalid request: {text}", "details": details}, 422)

    def gim_error(error: GimError) -> ApiError:
        """404 for what does not exist, 409 for what the current state refuses, 400 else."""
        status = 404 if isinstance(error, NotFound) else 409 if isinstance(error, Conflict) else 400
        return ApiError(status, str(error))

    def known_option(section: Enum, name: Enum) -> tuple[str, str]:
        """The option's section and name as text; a 404 when the section has no such name."""
        key = (str(section.value), str(name.value))
        if key not in OPTION_KEYS:
            names = ", ".join(spec.name for spec in OPTIONS if spec.section == key[0])
            raise ApiError(404, f"[{key[0]}] has no option '{key[1]}'; its options are {names}")
        return key

    # ----- helpers ---------------------------------------------------------------------------

    def tz_name() -> str:
        return views.schedule_zone(engine)

    def startable(who: Principal) -> list[tuple[str, bool]]:
        """Run Job's choices: (job, needs force). Operators start the jobs M7 lets anyone run
        by hand; admins also the others, forced."""
        return [(job.name, not job.manual) for job in JOBS if job.manual or who.may("admin")]

    def page(request: Request, name: str, who: Principal, **context: Any) -> Response:
        days = _days(request.query_params.get("days"))
        context.setdefault("notice", request.session.pop("notice", None))
        return templates.TemplateResponse(
            request,
            name,
            {
                "user": who,
                "csrf": request.session.get("csrf", ""),
                "tz": context.pop("tz", None) or tz_name(),
                "summary": views.summary(engine, days),
                "path": request.url.path,
                **context,
            },
        )

    def back(request: Request, target: str, notice: str) -> Response:
        request.session["notice"] = notice
        return RedirectResponse(target, status_code=303)

    def admit(job: str, params: str, force: bool, who: Principal) -> manager.Admission:
        if force and not who.may("admin"):
            raise ApiError(403, "forcing a run (M7) needs the admin role")
        return request_and_send(engine, job, who.name, params, force, via=Via.API)

    def option_rows() -> tuple[list[dict[str, Any]], Any]:
        with engine.connect() as conn:
            options = store.load_options(conn)
        report = check_deployment(options, settings)
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

    clients: list[Any] = []

    def redis_client() -> Any:
        if not clients:
            import redis

            clients.append(redis.Redis.from_url(settings.redis_url, socket_timeout=5))
        return clients[0]

    kit = Kit(
        engine=engine,
        settings=settings,
        templates=templates,
        throttle=throttle,
        hash_slots=hash_slots,
        page=page,
        back=back,
        admit=admit,
        gim_error=gim_error,
        known_option=known_option,
        startable=startable,
        option_rows=option_rows,
        redis=redis_client,
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    pages.register(app, kit)
    api.register(app, kit)

    app.add_middleware(HeadAsGet)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie="gim_session",
        max_age=settings.web_session_hours * 3600,
        same_site="lax",
        https_only=settings.web_base_url.startswith("https://"),
    )
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    app.add_middleware(SecurityHeaders)
    if settings.web_trusted_proxies:
        # Outermost: the client address every route and the login throttle see is the one a
        # trusted proxy forwards (the rightmost untrusted X-Forwarded-For entry); from other
        # peers the header is ignored (issue 41). `gim web` turns uvicorn's own handling off.
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.web_trusted_proxies)
    return app


def _days(text: str | None) -> int:
    try:
        return min(max(int(text or 7), 1), 366)
    except ValueError:
        return 7


def _local(value: str | datetime | None, tz_name: str) -> str:
    if not value:
        return "-"
    instant = datetime.fromisoformat(value) if isinstance(value, str) else value
    return instant.astimezone(zone(tz_name)).strftime("%Y-%m-%d %H:%M:%S %Z")
