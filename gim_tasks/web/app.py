"""The Monitor Jobs web app and its JSON API (SPEC §7).

Server-rendered pages (Jinja templates, no JavaScript) and a JSON API under ``/api`` with
OpenAPI docs. Both sit on the same manager operations as the CLI and ``celery call``
(``gim_tasks.runtime.manager``), so the rules cannot differ between them.

Security (A5):
* Every route but ``/login``, ``/healthz`` and ``/static`` depends on :func:`page_role` or
  :func:`api_role`, which check the caller's role; a test enumerates the routes and fails on
  any route without a check.
* Browsers log in with a password (argon2) and get a signed session cookie (HttpOnly,
  SameSite=Lax, Secure when GIM_WEB_BASE_URL is https). Every state-changing request made
  with that cookie carries the session's CSRF token (form field ``csrf`` or header
  ``X-CSRF-Token``), compared in constant time.
* Scripts send ``Authorization: Bearer <token>``; a bearer request carries no ambient
  credentials, so it needs no CSRF token.
* Request bodies are limited to :data:`MAX_BODY` bytes; payload fields have length limits.
"""

import hmac
import importlib.resources
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from datetime import date as datetime_date
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi import Path as FastApiPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gim_tasks import __version__, mart_status, notify
from gim_tasks.db.engine import make_engine
from gim_tasks.db.tables import RUN_STATES
from gim_tasks.errors import Conflict, GimError, NotFound
from gim_tasks.options import store
from gim_tasks.options.registry import OPTIONS, OptionError
from gim_tasks.runtime import manager
from gim_tasks.runtime.dispatch import request_and_send
from gim_tasks.runtime.health import check_deployment
from gim_tasks.schedule.admission import Via
from gim_tasks.schedule.jobs import CATEGORIES, JOB_NAMES, JOBS
from gim_tasks.schedule.localtime import zone
from gim_tasks.settings import Settings, get_settings
from gim_tasks.web import auth, views
from gim_tasks.web import schemas as sc
from gim_tasks.web.auth import Principal
from gim_tasks.web.schemas import errors, ok
from gim_tasks.web.security import (
    DOCS_CONTENT_SECURITY_POLICY,
    Busy,
    HashSlots,
    LoginThrottle,
    SecurityHeaders,
    Throttled,
    check_web_secret,
)

log = logging.getLogger("gim_tasks.web")

HERE = Path(__file__).parent
MAX_BODY = 64 * 1024
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
#: Routes anyone may call; every other route must check a role (tests enforce it).
PUBLIC_PATHS = ("/login", "/healthz", "/static")


#: The Swagger UI files /api/docs loads, vendored by the fastapi-offline package (Swagger UI
#: 5, which reads OpenAPI 3.1): served by this app, so the docs work without internet.
DOCS_DIR = Path(str(importlib.resources.files("fastapi_offline") / "static"))
DOCS_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js")
#: Path ids: bigint in PostgreSQL, so 1 .. 2**63 - 1 (larger ones are a 422, never a 500).
RunId = Annotated[int, FastApiPath(ge=1, le=sc.MAX_ID, description="Run id.")]
SubscriptionId = Annotated[int, FastApiPath(ge=1, le=sc.MAX_ID, description="Subscription id.")]
#: Every authenticated operation may answer these.
AUTH = errors(401, 403)
#: History's page size unless ?limit= says otherwise; the API's largest offset.
HISTORY_PAGE = 50
MAX_OFFSET = 10_000_000
OPTION_KEYS = frozenset(spec.key for spec in OPTIONS)


class ApiError(HTTPException):
    """An error answered as ``{"error": message}`` on /api and as a page elsewhere."""


class LoginRequired(Exception):
    def __init__(self, target: str) -> None:
        self.target = target


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
    app = FastAPI(
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

    # ----- who is calling ------------------------------------------------------------------

    def principal(request: Request) -> Principal | None:
        header = request.headers.get("authorization")
        if header:
            scheme, _, token = header.partition(" ")
            found = (
                auth.token_principal(engine, token.strip()) if scheme.lower() == "bearer" else None
            )
            if found is None:
                raise ApiError(401, "invalid API token (Authorization: Bearer <token>)")
            return found
        # A session is a server-side record (web_session): the signed cookie only names it.
        session_id = request.session.get("sid")
        if isinstance(session_id, str):
            return auth.session_principal(engine, session_id, settings.web_session_idle_minutes)
        return None

    def _csrf_ok(request: Request, sent: str | None) -> bool:
        expected = request.session.get("csrf")
        return bool(expected and sent and hmac.compare_digest(str(expected), str(sent)))

    def api_role(needed: str) -> Callable[[Request], Awaitable[Principal]]:
        async def check(request: Request) -> Principal:
            who = await run_in_threadpool(principal, request)
            if who is None:
                raise ApiError(
                    401, "authentication required: log in or send Authorization: Bearer <token>"
                )
            if not who.may(needed):
                raise ApiError(403, f"this needs the {needed} role; {who.name} is {who.role}")
            if (
                request.method not in SAFE_METHODS
                and who.via == "session"
                and not _csrf_ok(request, request.headers.get("x-csrf-token"))
            ):
                raise ApiError(403, "missing or wrong X-CSRF-Token header")
            return who

        check.role = needed  # type: ignore[attr-defined]
        return check

    def page_role(needed: str) -> Callable[[Request], Awaitable[Principal]]:
        async def check(request: Request) -> Principal:
            who = await run_in_threadpool(principal, request)
            if who is None:
                raise LoginRequired(str(request.url.path))
            if not who.may(needed):
                raise HTTPException(403, f"this needs the {needed} role; {who.name} is {who.role}")
            if request.method not in SAFE_METHODS and who.via == "session":
                form = await request.form()
                sent = form.get("csrf")
                if not _csrf_ok(request, sent if isinstance(sent, str) else None):
                    raise HTTPException(403, "the form is stale or forged (CSRF token); reload")
            return who

        check.role = needed  # type: ignore[attr-defined]
        return check

    Viewer = Annotated[Principal, Depends(api_role("viewer"))]
    Operator = Annotated[Principal, Depends(api_role("operator"))]
    Admin = Annotated[Principal, Depends(api_role("admin"))]
    PageViewer = Annotated[Principal, Depends(page_role("viewer"))]
    PageOperator = Annotated[Principal, Depends(page_role("operator"))]
    PageAdmin = Annotated[Principal, Depends(page_role("admin"))]

    # ----- errors ----------------------------------------------------------------------------

    def _is_api(request: Request) -> bool:
        return request.url.path.startswith("/api")

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

    # ----- public ----------------------------------------------------------------------------

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str = "/jobs/scheduled") -> Response:
        request.session.setdefault("csrf", secrets.token_urlsafe(32))
        return templates.TemplateResponse(
            request,
            "login.html",
            {"next": _safe_next(next), "csrf": request.session["csrf"], "user": None},
        )

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request,
        name: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=1024)],
        csrf: Annotated[str, Form(max_length=100)] = "",
        next: Annotated[str, Form(max_length=500)] = "/jobs/scheduled",
    ) -> Response:
        if not _csrf_ok(request, csrf):
            raise HTTPException(403, "the login form is stale; reload the page")
        client = request.client.host if request.client else "unknown"

        def refuse(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
            return templates.TemplateResponse(
                request,
                "login.html",
                {
                    "next": _safe_next(next),
                    "csrf": request.session["csrf"],
                    "error": message,
                    "user": None,
                },
                status_code=status,
                headers=headers,
            )

        try:
            # Throttled before any hash is computed; hashing is bounded per process.
            throttle.check(name, client)
            with hash_slots.slot():
                who = auth.authenticate(engine, name, password)
        except Throttled as error:
            return refuse(str(error), 429, {"Retry-After": str(error.retry_after)})
        except Busy as error:
            return refuse(str(error), 503, {"Retry-After": "5"})
        if who is None:
            throttle.failed(name, client)
            return refuse("wrong user name or password", 401)
        session_id = auth.create_session(engine, who.user_id, client, settings.web_session_hours)
        request.session.clear()  # a new session (and CSRF token) at every login
        request.session.update(sid=session_id, csrf=secrets.token_urlsafe(32))
        return RedirectResponse(_safe_next(next), status_code=303)

    # ----- pages -----------------------------------------------------------------------------

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, who: PageViewer) -> Response:
        session_id = request.session.get("sid")
        if isinstance(session_id, str):
            auth.end_session(engine, session_id)  # the cookie, even copied, is no longer a session
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/", include_in_schema=False)
    def home(who: PageViewer) -> Response:
        return RedirectResponse("/jobs/scheduled", status_code=303)

    @app.get("/jobs/scheduled", response_class=HTMLResponse, include_in_schema=False)
    def scheduled_page(request: Request, who: PageViewer, category: str = "") -> Response:
        try:
            rows = views.scheduled_jobs(engine, datetime.now(UTC), category)
            queued = views.runs(engine, views.RunQuery.parse("scheduled", category=category))
        except GimError as error:
            raise HTTPException(400, str(error)) from None
        return page(request, "scheduled.html", who, rows=rows, queued=queued, category=category)

    @app.get("/jobs/running", response_class=HTMLResponse, include_in_schema=False)
    def running_page(request: Request, who: PageViewer, category: str = "") -> Response:
        try:
            found = views.runs(engine, views.RunQuery.parse("running", category=category))
        except GimError as error:
            raise HTTPException(400, str(error)) from None
        return page(request, "running.html", who, runs=found, category=category)

    @app.get("/jobs/history", response_class=HTMLResponse, include_in_schema=False)
    def history_page(request: Request, who: PageViewer) -> Response:
        """A6: filters (several states at once), a date range, sort and pages; every value in
        the query string, so a view can be bookmarked and the summary can link to one."""
        params = request.query_params
        filters = {
            name: params.get(name, "")
            for name in ("job", "category", "date", "from", "to", "outcome", "trigger")
        }
        filters |= {"ended_since": params.get("ended_since", ""), "sort": params.get("sort", "")}
        states = [s for value in params.getlist("state") for s in value.split(",") if s]
        try:
            size = int(params.get("limit") or HISTORY_PAGE)
            offset = int(params.get("offset") or 0)
        except ValueError:
            raise HTTPException(400, "limit and offset must be whole numbers") from None
        try:
            query = views.RunQuery.parse(
                "history",
                filters["job"],
                filters["category"],
                ",".join(states),
                filters["date"],
                filters["from"],
                filters["to"],
                filters["outcome"],
                filters["trigger"],
                filters["ended_since"],
                filters["sort"],
                size,
                offset,
            )
            found = views.page_of_runs(engine, query)
        except GimError as error:
            raise HTTPException(400, str(error)) from None
        kept = [(k, v) for k, v in params.multi_items() if k not in ("offset",) and v]

        def at(offset: int) -> str:
            return "/jobs/history?" + urlencode([*kept, ("offset", str(offset))])

        pages = {
            "first": found["offset"] + 1 if found["runs"] else 0,
            "last": found["offset"] + len(found["runs"]),
            "total": found["total"],
            "previous": at(max(0, offset - size)) if offset > 0 else None,
            "next": at(offset + size) if offset + size < found["total"] else None,
        }
        return page(
            request,
            "history.html",
            who,
            runs=found["runs"],
            filters=filters,
            chosen_states=states,
            pages=pages,
            size=size,
            sorts=views.SORTS,
            outcomes=views.OUTCOMES,
        )

    @app.get("/etl", response_class=HTMLResponse, include_in_schema=False)
    def etl_page(request: Request, who: PageViewer) -> Response:
        return page(request, "etl.html", who, etl=mart_status.etl_status(engine))

    @app.get("/aggregation", response_class=HTMLResponse, include_in_schema=False)
    def aggregation_page(request: Request, who: PageViewer) -> Response:
        return page(request, "aggregation.html", who, agg=mart_status.aggregate_status(engine))

    @app.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def run_page(request: Request, who: PageViewer, run_id: RunId) -> Response:
        detail = views.run_detail(engine, run_id)
        if detail is None:
            raise HTTPException(404, f"run {run_id} does not exist")
        return page(request, "run.html", who, run=detail)

    @app.get("/jobs/run", response_class=HTMLResponse, include_in_schema=False)
    def run_job_form(request: Request, who: PageOperator, job: str = "") -> Response:
        return page(
            request,
            "run_job.html",
            who,
            selected=job,
            params="",
            reply=None,
            startable=startable(who),
        )

    @app.post("/jobs/run", response_class=HTMLResponse, include_in_schema=False)
    def run_job_page(
        request: Request,
        who: PageOperator,
        job: Annotated[str, Form(max_length=64)],
        params: Annotated[str, Form(max_length=2000)] = "",
        force: Annotated[bool, Form()] = False,
    ) -> Response:
        try:
            admission = admit(job, params.strip(), force, who)
            reply = {
                "run_id": admission.run_id,
                "state": admission.state,
                "reason": admission.reason,
            }
        except GimError as error:
            reply = {"run_id": None, "state": "Rejected", "reason": str(error)}
        except ApiError as error:
            reply = {"run_id": None, "state": "Rejected", "reason": error.detail}
        return page(
            request,
            "run_job.html",
            who,
            selected=job,
            params=params,
            reply=reply,
            startable=startable(who),
        )

    @app.post("/runs/{run_id}/stop", include_in_schema=False)
    def stop_page(request: Request, who: PageOperator, run_id: RunId) -> Response:
        try:
            notice = manager.stop_run(engine, run_id, who.name)
        except GimError as error:
            notice = str(error)
        return back(request, request.headers.get("referer") or "/jobs/running", notice)

    @app.post("/runs/{run_id}/cancel", include_in_schema=False)
    def cancel_page(request: Request, who: PageOperator, run_id: RunId) -> Response:
        try:
            notice = manager.cancel_run(engine, run_id, who.name)
        except GimError as error:
            notice = str(error)
        return back(request, request.headers.get("referer") or "/jobs/scheduled", notice)

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

    @app.get("/options", response_class=HTMLResponse, include_in_schema=False)
    def options_page(request: Request, who: PageViewer) -> Response:
        rows, report = option_rows()
        return page(request, "options.html", who, options=rows, report=report)

    @app.post("/options", include_in_schema=False)
    def options_edit(
        request: Request,
        who: PageAdmin,
        section: Annotated[str, Form(max_length=64)],
        name: Annotated[str, Form(max_length=64)],
        value: Annotated[str, Form(max_length=2000)] = "",
        reset: Annotated[bool, Form()] = False,
    ) -> Response:
        try:
            if reset:
                update = store.unset_option(engine, section, name, who.name)
            else:
                update = store.set_option(
                    engine, section, name, value, who.name, settings.output_directory
                )
            notice = f"saved: {update}"
        except (GimError, OptionError) as error:
            notice = f"not saved: {error}"
        return back(request, "/options", notice)

    @app.get("/notifications", response_class=HTMLResponse, include_in_schema=False)
    def notifications_page(request: Request, who: PageViewer) -> Response:
        subscriptions = notify.list_subscriptions(engine)
        return page(request, "notifications.html", who, subscriptions=subscriptions)

    @app.post("/notifications", include_in_schema=False)
    def notifications_add(
        request: Request,
        who: PageAdmin,
        job: Annotated[str, Form(max_length=64)],
        recipient: Annotated[str, Form(max_length=320)],
        on_success: Annotated[bool, Form()] = False,
        on_error: Annotated[bool, Form()] = False,
    ) -> Response:
        try:
            notify.add_subscription(engine, job, recipient, on_success, on_error, who.name)
            notice = f"{recipient} is notified of {job}"
        except GimError as error:
            notice = f"not saved: {error}"
        return back(request, "/notifications", notice)

    @app.post("/notifications/{subscription_id}/delete", include_in_schema=False)
    def notifications_delete(
        request: Request, who: PageAdmin, subscription_id: SubscriptionId
    ) -> Response:
        try:
            notify.remove_subscription(engine, subscription_id)
            notice = "subscription removed"
        except GimError as error:
            notice = str(error)
        return back(request, "/notifications", notice)

    # ----- API -------------------------------------------------------------------------------

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi(who: Viewer) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/api/docs", include_in_schema=False)
    def docs(request: Request, who: Viewer) -> Response:
        """Swagger UI from the vendored files (fastapi-offline): no CDN, so it works
        air-gapped; its one script of our own is /static/swagger-init.js."""
        return templates.TemplateResponse(
            request,
            "api_docs.html",
            {"title": app.title},
            headers={"Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY},
        )

    @app.get("/api/docs/assets/{name}", include_in_schema=False)
    def docs_asset(who: Viewer, name: str) -> Response:
        if name not in DOCS_ASSETS:
            raise ApiError(404, f"no such file; the docs' files are {', '.join(DOCS_ASSETS)}")
        return FileResponse(DOCS_DIR / name)

    @app.get(
        "/api/me", tags=["session"], response_model=None, responses={**ok(sc.Me, "You."), **AUTH}
    )
    def me(who: Viewer) -> dict[str, str]:
        """Who you are and your role."""
        return {"name": who.name, "role": who.role, "via": who.via}

    @app.get(
        "/api/jobs/scheduled",
        tags=["jobs"],
        response_model=None,
        responses={**ok(list[sc.ScheduledJob], "One object per job."), **AUTH, **errors(422)},
    )
    def api_scheduled(
        who: Viewer, category: Annotated[sc.Category | None, Query()] = None
    ) -> list[dict[str, Any]]:
        """The Scheduled tab (A1): one object per job, Next Run in the schedule's zone."""
        return views.scheduled_jobs(engine, datetime.now(UTC), _text(category))

    @app.get(
        "/api/runs",
        tags=["runs"],
        response_model=None,
        responses={
            200: {
                "model": list[sc.Run],
                "description": "One page of runs, in the order asked for.",
                "headers": {
                    "X-Total-Count": {
                        "description": "How many runs the filters select in all pages.",
                        "schema": {"type": "integer", "minimum": 0},
                    }
                },
            },
            **AUTH,
            **errors(400, 422),
        },
    )
    def api_runs(
        who: Viewer,
        response: Response,
        which: Annotated[
            Literal["all", "running", "scheduled", "history", "skipped"],
            Query(
                description="skipped: firings a rule required the scheduler to skip (S1, S2, "
                "S6, S9, S12), which no other list shows."
            ),
        ] = "all",
        job: Annotated[sc.JobName | None, Query()] = None,
        category: Annotated[sc.Category | None, Query()] = None,
        state: Annotated[
            str | None,
            Query(
                pattern=sc.csv_pattern(RUN_STATES),
                description="One state or several, comma-separated: Failed,Stopped.",
            ),
        ] = None,
        date: Annotated[
            datetime_date | None,
            Query(description="A local day of the schedule's zone, YYYY-MM-DD (from = to)."),
        ] = None,
        since: Annotated[
            datetime_date | None,
            Query(alias="from", description="First local day (included), YYYY-MM-DD."),
        ] = None,
        until: Annotated[
            datetime_date | None,
            Query(alias="to", description="Last local day (included), YYYY-MM-DD."),
        ] = None,
        outcome: Annotated[
            str | None,
            Query(
                pattern=sc.csv_pattern(views.OUTCOMES),
                description="R4 outcomes, comma-separated: success, failure, operator.",
            ),
        ] = None,
        trigger: Annotated[
            str | None,
            Query(
                pattern=sc.csv_pattern(views.TRIGGERS),
                description="Triggers, comma-separated: scheduled, manual, forced, restart.",
            ),
        ] = None,
        ended_since: Annotated[
            datetime | None,
            Query(description="Runs that ended at or after this instant (with its offset)."),
        ] = None,
        sort: Annotated[
            Literal["-started_at", "started_at", "state"],
            Query(description="Start time newest or oldest first, or state."),
        ] = "-started_at",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> list[dict[str, Any]]:
        """Runs (A2, A6), filtered by job, category, states, local days, outcome, trigger;
        sorted; one page of `limit` from `offset`. The `X-Total-Count` header says how many
        runs the filters select in all."""
        if ended_since is not None and ended_since.tzinfo is None:
            raise ApiError(400, "ended_since needs a UTC offset (…Z or +01:00)")
        try:
            query = views.RunQuery.parse(
                which,
                _text(job),
                _text(category),
                state,
                date.isoformat() if date else None,
                since.isoformat() if since else None,
                until.isoformat() if until else None,
                outcome,
                trigger,
                ended_since.isoformat() if ended_since else None,
                sort,
                limit,
                offset,
            )
        except GimError as error:
            raise gim_error(error) from None
        found = views.page_of_runs(engine, query)
        response.headers["X-Total-Count"] = str(found["total"])
        return list(found["runs"])

    @app.get(
        "/api/runs/{run_id}",
        tags=["runs"],
        response_model=None,
        responses={**ok(sc.RunDetail, "The run."), **AUTH, **errors(404, 422)},
    )
    def api_run(who: Viewer, run_id: RunId) -> dict[str, Any]:
        """One run with its counts, error, discards and notification mails."""
        detail = views.run_detail(engine, run_id)
        if detail is None:
            raise ApiError(404, f"run {run_id} does not exist")
        return detail

    @app.post(
        "/api/runs",
        tags=["runs"],
        status_code=201,
        response_model=None,
        responses={
            **ok(sc.Admission, "Admitted: Running, or Scheduled with what it waits for.", 201),
            409: {"model": sc.Rejection, "description": "Rejected by the rules, with the reason."},
            **AUTH,
            **errors(400, 404, 413, 422),
        },
    )
    def api_run_job(who: Operator, body: sc.RunRequest) -> JSONResponse:
        """Run a job now (M1): Running, Scheduled (with the reason) or Rejected (with the
        reason; answered 409). Forcing (M7) needs the admin role."""
        try:
            admission = admit(body.job.value, body.params.strip(), body.force, who)
        except GimError as error:
            raise gim_error(error) from None
        reply = {
            "run_id": admission.run_id,
            "state": admission.state,
            "reason": admission.reason,
        }
        if admission.state == "Rejected":
            return JSONResponse({**reply, "error": admission.reason}, status_code=409)
        return JSONResponse(reply, status_code=201)

    @app.post(
        "/api/runs/{run_id}/stop",
        tags=["runs"],
        response_model=None,
        responses={**ok(sc.Result, "Stop requested."), **AUTH, **errors(404, 409, 422)},
    )
    def api_stop(who: Operator, run_id: RunId) -> dict[str, str]:
        """Stop a Running run (M6): cooperative, then forced after the grace period."""
        try:
            return {"result": manager.stop_run(engine, run_id, who.name)}
        except GimError as error:
            raise gim_error(error) from None

    @app.post(
        "/api/runs/{run_id}/cancel",
        tags=["runs"],
        response_model=None,
        responses={**ok(sc.Result, "Cancelled."), **AUTH, **errors(404, 409, 422)},
    )
    def api_cancel(who: Operator, run_id: RunId) -> dict[str, str]:
        """Cancel a Scheduled run (M6)."""
        try:
            return {"result": manager.cancel_run(engine, run_id, who.name)}
        except GimError as error:
            raise gim_error(error) from None

    @app.get(
        "/api/summary",
        tags=["jobs"],
        response_model=None,
        responses={**ok(sc.Summary, "Per category."), **AUTH, **errors(422)},
    )
    def api_summary(who: Viewer, days: Annotated[int, Query(ge=1, le=366)] = 7) -> dict[str, Any]:
        """Status summary (A4): per category, runs and failures of the last N days."""
        return views.summary(engine, days)

    @app.get(
        "/api/etl/status",
        tags=["status"],
        response_model=None,
        responses={**ok(sc.EtlStatus, "ETL status."), **AUTH},
    )
    def api_etl_status(who: Viewer) -> dict[str, Any]:
        """What `gim etl status --json` shows: per IDB and table extraction marks and rows
        waiting for Transform, segment facts and discards per IDB, lag, fact counts, the last
        Extract and Transform runs."""
        return mart_status.etl_status(engine)

    @app.get(
        "/api/aggregate/status",
        tags=["status"],
        response_model=None,
        responses={**ok(sc.AggregateStatus, "Aggregation status."), **AUTH},
    )
    def api_aggregate_status(who: Viewer) -> dict[str, Any]:
        """What `gim aggregate status --json` shows: pending intervals, queued re-aggregation
        requests, the last batch's duration, recent runs, freshness per hierarchy."""
        return mart_status.aggregate_status(engine)

    @app.get(
        "/api/options",
        tags=["options"],
        response_model=None,
        responses={**ok(sc.OptionsReply, "Options and findings."), **AUTH},
    )
    def api_options(who: Viewer) -> dict[str, Any]:
        """Every option with its value, and the configuration check's findings."""
        rows, report = option_rows()
        return {"options": rows, "check": [f.as_dict() for f in report.findings]}

    @app.put(
        "/api/options/{section}/{name}",
        tags=["options"],
        response_model=None,
        responses={
            **ok(sc.OptionUpdate, "Stored."),
            **AUTH,
            **errors(400, 404, 413, 422),
        },
    )
    def api_set_option(
        who: Admin, section: sc.OptionSection, name: sc.OptionName, body: sc.OptionValue
    ) -> dict[str, Any]:
        """Set one option (admin). An invalid value is refused (400, naming what is allowed)
        and nothing is stored; a name the section does not have is a 404."""
        section_text, name_text = known_option(section, name)
        try:
            update = store.set_option(
                engine, section_text, name_text, body.value, who.name, settings.output_directory
            )
        except (GimError, OptionError) as error:
            raise gim_error(GimError(str(error))) from None
        return {"option": f"[{section}] {name}", "old": update.old, "new": update.new}

    @app.delete(
        "/api/options/{section}/{name}",
        tags=["options"],
        response_model=None,
        responses={**ok(sc.OptionUpdate, "Back to its default."), **AUTH, **errors(404, 422)},
    )
    def api_unset_option(
        who: Admin, section: sc.OptionSection, name: sc.OptionName
    ) -> dict[str, Any]:
        """Return one option to its default (admin)."""
        section_text, name_text = known_option(section, name)
        try:
            update = store.unset_option(engine, section_text, name_text, who.name)
        except (GimError, OptionError) as error:
            raise gim_error(GimError(str(error))) from None
        return {"option": f"[{section}] {name}", "old": update.old, "new": update.new}

    @app.get(
        "/api/notifications",
        tags=["notifications"],
        response_model=None,
        responses={**ok(list[sc.SubscriptionRow], "Subscriptions."), **AUTH},
    )
    def api_subscriptions(who: Viewer) -> list[dict[str, Any]]:
        """Notification subscriptions (A3)."""
        return [
            {**row, "created_at": row["created_at"].isoformat()}
            for row in notify.list_subscriptions(engine)
        ]

    @app.post(
        "/api/notifications",
        tags=["notifications"],
        status_code=201,
        response_model=None,
        responses={
            **ok(sc.Created, "Subscribed (or updated).", 201),
            **AUTH,
            **errors(400, 404, 409, 413, 422),
        },
    )
    def api_subscribe(who: Admin, body: sc.Subscription) -> dict[str, Any]:
        """Subscribe a user or an address to a job's successes and/or errors (admin)."""
        try:
            sid = notify.add_subscription(
                engine, body.job.value, body.recipient, body.on_success, body.on_error, who.name
            )
        except GimError as error:
            raise gim_error(error) from None
        return {"id": sid}

    @app.delete(
        "/api/notifications/{subscription_id}",
        tags=["notifications"],
        response_model=None,
        responses={**ok(sc.Result, "Removed."), **AUTH, **errors(404, 422)},
    )
    def api_unsubscribe(who: Admin, subscription_id: SubscriptionId) -> dict[str, str]:
        """Remove a subscription (admin)."""
        try:
            notify.remove_subscription(engine, subscription_id)
        except GimError as error:
            raise gim_error(error) from None
        return {"result": f"subscription {subscription_id} removed"}

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
    return app


def _text(value: Enum | None) -> str | None:
    """An enumerated parameter as the plain text the views take."""
    return None if value is None else str(value.value)


def _safe_next(target: str) -> str:
    """Only local paths after login (no open redirect to another site)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/jobs/scheduled"


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
