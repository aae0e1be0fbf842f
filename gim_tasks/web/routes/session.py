"""Signing in and out, who you are, the API document and its docs (A5)."""

import importlib.resources
import logging
import secrets
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from gim_tasks.monitor import audit
from gim_tasks.web import auth
from gim_tasks.web import schemas as sc
from gim_tasks.web.access import PageViewer, Viewer, csrf_ok
from gim_tasks.web.kit import AUTH, ApiError, Kit, KitDep, safe_next
from gim_tasks.web.schemas import ok
from gim_tasks.web.security import DOCS_CONTENT_SECURITY_POLICY, Busy, Throttled

log = logging.getLogger("gim_tasks.web")

#: The Swagger UI files /api/docs loads, vendored by the fastapi-offline package (Swagger UI
#: 5, which reads OpenAPI 3.1): served by this app, so the docs work without internet.
DOCS_DIR = Path(str(importlib.resources.files("fastapi_offline") / "static"))
DOCS_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js")

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_form(kit: KitDep, request: Request, next: str = "/jobs/scheduled") -> Response:
    request.session.setdefault("csrf", secrets.token_urlsafe(32))
    return kit.templates.TemplateResponse(
        request,
        "login.html",
        {"next": safe_next(next), "csrf": request.session["csrf"], "user": None},
    )


@router.post("/login", include_in_schema=False)
def login(
    kit: KitDep,
    request: Request,
    name: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    csrf: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "/jobs/scheduled",
) -> Response:
    if not csrf_ok(request, csrf):
        raise HTTPException(403, "the login form is stale; reload the page")
    client = request.client.host if request.client else "unknown"

    def refuse(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
        return kit.templates.TemplateResponse(
            request,
            "login.html",
            {
                "next": safe_next(next),
                "csrf": request.session["csrf"],
                "error": message,
                "user": None,
            },
            status_code=status,
            headers=headers,
        )

    try:
        # The attempt is reserved as a failure before any hash is computed (concurrent
        # attempts cannot all pass the count); hashing is bounded per process.
        reservation = kit.throttle.reserve(name, client)
    except Throttled as error:
        log.warning("login refused for %r from %s: %s", name[:64], client, error)
        _failed(kit, name, f"throttled: {error}")
        return refuse(str(error), 429, {"Retry-After": str(error.retry_after)})
    if reservation.delay:  # an address with many failures is slowed, not refused
        time.sleep(reservation.delay)
    try:
        with kit.hash_slots.slot():
            who = auth.authenticate(kit.engine, name, password)
    except Busy as error:
        return refuse(str(error), 503, {"Retry-After": "5"})
    if who is None:
        log.warning("failed login for %r from %s", name[:64], client)
        _failed(kit, name, "wrong user name or password")
        return refuse("wrong user name or password", 401)
    kit.throttle.succeeded(reservation, name, client)
    session_id = auth.create_session(kit.engine, who, client, kit.settings.web_session_hours)
    request.session.clear()  # a new session (and CSRF token) at every login
    request.session.update(sid=session_id, csrf=secrets.token_urlsafe(32))
    return RedirectResponse(safe_next(next), status_code=303)


def _failed(kit: Kit, name: str, why: str) -> None:
    """P6: a failed login is audited under the name tried (no password, ever)."""
    audit.identify(name[:64], "unauthenticated")
    audit.record_now(kit.engine, audit.Action.LOGIN_FAILED, name[:64], name[:64], reason=why)


@router.post("/logout", include_in_schema=False)
def logout(kit: KitDep, request: Request, who: PageViewer) -> Response:
    session_id = request.session.get("sid")
    if isinstance(session_id, str):
        auth.end_session(
            kit.engine, session_id, who.name
        )  # the cookie, even copied, is no longer a session
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/", include_in_schema=False)
def home(who: PageViewer) -> Response:
    return RedirectResponse("/jobs/scheduled", status_code=303)


@router.get(
    "/api/me", tags=["session"], response_model=None, responses={**ok(sc.Me, "You."), **AUTH}
)
def me(who: Viewer) -> dict[str, str]:
    """Who you are and your role."""
    return {"name": who.name, "role": who.role, "via": who.via}


@router.get("/api/openapi.json", include_in_schema=False)
def openapi(request: Request, who: Viewer) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/api/docs", include_in_schema=False)
def docs(kit: KitDep, request: Request, who: Viewer) -> Response:
    """Swagger UI from the vendored files (fastapi-offline): no CDN, so it works
    air-gapped; its one script of our own is /static/swagger-init.js."""
    return kit.templates.TemplateResponse(
        request,
        "api_docs.html",
        {"title": request.app.title},
        headers={"Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY},
    )


@router.get("/api/docs/assets/{name}", include_in_schema=False)
def docs_asset(who: Viewer, name: str) -> Response:
    if name not in DOCS_ASSETS:
        raise ApiError(404, f"no such file; the docs' files are {', '.join(DOCS_ASSETS)}")
    return FileResponse(DOCS_DIR / name)
