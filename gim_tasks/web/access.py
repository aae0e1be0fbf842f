"""Who is calling and what they may do (SPEC A5): every route but the public ones depends on
one of the role types below, which a test enumerates.

* API routes (:data:`Viewer`, :data:`Operator`, :data:`Admin`) answer 401 without a valid
  token or session and 403 for a weaker role, as JSON; a state-changing request made with a
  session cookie must carry the session's CSRF token in ``X-CSRF-Token``.
* Pages (:data:`PageViewer`, :data:`PageOperator`, :data:`PageAdmin`) redirect to the login,
  and a form posted with a session must carry the token in its ``csrf`` field.
"""

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeAlias

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from gim_tasks.monitor import audit
from gim_tasks.web import auth
from gim_tasks.web.auth import Principal
from gim_tasks.web.kit import ApiError, LoginRequired

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def principal(request: Request) -> Principal | None:
    """Who is calling: a bearer token's user, a session's user, or nobody (None). A bad token
    is a 401 at once. The app's engine and settings are on ``request.app.state``."""
    engine, settings = request.app.state.engine, request.app.state.settings
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        found = auth.token_principal(engine, token.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise ApiError(401, "invalid API token (Authorization: Bearer <token>)")
        return found
    # A session is a server-side record (web_session): the signed cookie only names it.
    session_id = request.session.get("sid")
    if isinstance(session_id, str):
        return auth.session_principal(engine, session_id, settings.web_session_idle_minutes)
    return None


def csrf_ok(request: Request, sent: str | None) -> bool:
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
            and not csrf_ok(request, request.headers.get("x-csrf-token"))
        ):
            raise ApiError(403, "missing or wrong X-CSRF-Token header")
        audit.identify(who.name, who.role)  # P6: the request's audit rows name the caller
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
            if not csrf_ok(request, sent if isinstance(sent, str) else None):
                raise HTTPException(403, "the form is stale or forged (CSRF token); reload")
        audit.identify(who.name, who.role)
        return who

    check.role = needed  # type: ignore[attr-defined]
    return check


Viewer: TypeAlias = Annotated[Principal, Depends(api_role("viewer"))]
Operator: TypeAlias = Annotated[Principal, Depends(api_role("operator"))]
Admin: TypeAlias = Annotated[Principal, Depends(api_role("admin"))]
PageViewer: TypeAlias = Annotated[Principal, Depends(page_role("viewer"))]
PageOperator: TypeAlias = Annotated[Principal, Depends(page_role("operator"))]
PageAdmin: TypeAlias = Annotated[Principal, Depends(page_role("admin"))]
