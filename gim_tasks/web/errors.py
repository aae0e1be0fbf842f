"""How the web app answers an error: JSON ``{"error": ...}`` on ``/api`` and ``/metrics``, an
error page elsewhere; one handler per kind (HTTP errors with their headers, values PostgreSQL
cannot store, a login needed, a request that does not validate, and the project's own
:class:`~gim_tasks.errors.GimError` hierarchy)."""

from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from gim_tasks.errors import Conflict, GimError, NotFound
from gim_tasks.web import schemas as sc
from gim_tasks.web.kit import ApiError, LoginRequired


def every_route(app: FastAPI) -> list[Any]:
    """Every route of ``app``, the routers' included (FastAPI keeps an included router as one
    entry of ``app.routes`` and resolves its routes lazily)."""
    found: list[Any] = []
    pending = list(app.router.routes)
    while pending:
        route = pending.pop(0)
        included = getattr(route, "original_router", None)
        if included is not None:
            pending[:0] = list(included.routes)
        else:
            found.append(route)
    return found


def as_api_error(error: GimError) -> ApiError:
    """404 for what does not exist, 409 for what the current state refuses, 400 else."""
    status = 404 if isinstance(error, NotFound) else 409 if isinstance(error, Conflict) else 400
    return ApiError(status, str(error))


def install(app: FastAPI, templates: Jinja2Templates) -> None:
    """Add the app's exception handlers."""

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
                for route in every_route(app)
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

    @app.exception_handler(GimError)
    async def refused(request: Request, error: GimError) -> Response:
        """The project's errors (refusals of the manager, the option store, the ledger's
        queries...): one conversion for every route (:func:`as_api_error`)."""
        return await http_error(request, as_api_error(error))
