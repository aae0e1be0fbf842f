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
import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import (
    JSONResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.engine import Engine
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gim_tasks import __version__
from gim_tasks.db.engine import make_engine
from gim_tasks.db.tables import RUN_STATES
from gim_tasks.lifecycle import Channel
from gim_tasks.monitor import audit
from gim_tasks.options.registry import OPTIONS
from gim_tasks.schedule.jobs import CATEGORIES, JOB_NAMES
from gim_tasks.schedule.localtime import zone
from gim_tasks.settings import Settings, get_settings
from gim_tasks.web import errors
from gim_tasks.web.kit import ApiError, Kit
from gim_tasks.web.routes import (
    audit as audit_routes,
)
from gim_tasks.web.routes import (
    backfills,
    firings,
    holds,
    notifications,
    options,
    runs,
    scheduled,
    session,
    status,
)
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


class AuditOrigin:
    """P6: every request is an audit origin: ``api`` under /api/, ``web`` elsewhere, with a
    request id (the caller's ``X-Request-ID`` when it is a plain token, else a new one; sent
    back in the response) and the client address (after a trusted proxy's rewrite: this
    middleware is the innermost). The role check fills in who called."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = sent if REQUEST_ID.fullmatch(sent) else audit.new_request_id()
        channel = Channel.API if scope["path"].startswith("/api/") else Channel.WEB
        client = scope.get("client")

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        with audit.origin(channel, request_id=request_id, client=client[0] if client else None):
            await self.app(scope, receive, tagged)


#: A request id a caller may set: a plain token (it is stored and echoed).
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


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

    errors.install(app, templates)
    app.state.kit = Kit(engine, settings, templates, throttle, hash_slots)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    # Pages first, then the API, per feature (gim_tasks/web/routes/): each route receives the
    # Kit through FastAPI's dependency on app.state (kit.KitDep).
    for router in (
        session.router,
        scheduled.router,
        holds.router,
        backfills.router,
        runs.router,
        firings.router,
        status.router,
        options.router,
        notifications.router,
        audit_routes.router,
    ):
        app.include_router(router)

    app.add_middleware(AuditOrigin)
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
    app.add_middleware(SecurityHeaders, hsts_seconds=settings.web_hsts_seconds)
    if settings.web_trusted_proxies:
        # Outermost: the client address every route and the login throttle see is the one a
        # trusted proxy forwards (the rightmost untrusted X-Forwarded-For entry); from other
        # peers the header is ignored (issue 41). `gim web` turns uvicorn's own handling off.
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.web_trusted_proxies)
    return app


def _local(value: str | datetime | None, tz_name: str) -> str:
    if not value:
        return "-"
    instant = datetime.fromisoformat(value) if isinstance(value, str) else value
    return instant.astimezone(zone(tz_name)).strftime("%Y-%m-%d %H:%M:%S %Z")
