"""Runs: start, stop, cancel, the Running and History tabs, a run's page (M1, M6, A2, A6)."""

from datetime import date as datetime_date
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from gim_tasks.db.tables import RUN_STATES
from gim_tasks.errors import GimError
from gim_tasks.lifecycle import RunState
from gim_tasks.runtime import manager
from gim_tasks.web import schemas as sc
from gim_tasks.web import views
from gim_tasks.web.access import Operator, PageOperator, PageViewer, Viewer
from gim_tasks.web.kit import (
    AUTH,
    HISTORY_PAGE,
    MAX_OFFSET,
    NUL,
    ApiError,
    KitDep,
    RunId,
    day_query,
    plain_days,
    text,
)
from gim_tasks.web.schemas import errors, ok

router = APIRouter()


@router.get(
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
        **errors(400, 422, unchecked="a `from` day after `to`."),
    },
)
def api_runs(
    kit: KitDep,
    who: Viewer,
    request: Request,
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
        day_query("A local day of the schedule's zone, YYYY-MM-DD (from = to)."),
    ] = None,
    since: Annotated[
        datetime_date | None,
        day_query("First local day (included), YYYY-MM-DD.", alias="from"),
    ] = None,
    until: Annotated[
        datetime_date | None,
        day_query("Last local day (included), YYYY-MM-DD.", alias="to"),
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
    plain_days(request, "date", "from", "to")
    raw_since = request.query_params.get("ended_since", "")
    if ended_since is not None and (
        ended_since.tzinfo is None or raw_since.replace(".", "", 1).lstrip("-").isdigit()
    ):
        # (A bare number would be taken for Unix time: an instant is written as one.)
        raise ApiError(400, "ended_since needs an ISO instant with its UTC offset (…Z or +01:00)")
    query = views.RunQuery.parse(
        which,
        text(job),
        text(category),
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
    found = views.page_of_runs(kit.engine, query)
    response.headers["X-Total-Count"] = str(found["total"])
    return list(found["runs"])


@router.get(
    "/api/runs/{run_id}",
    tags=["runs"],
    response_model=None,
    responses={**ok(sc.RunDetail, "The run."), **AUTH, **errors(404, 422)},
)
def api_run(kit: KitDep, who: Viewer, run_id: RunId) -> dict[str, Any]:
    """One run with its counts, error, discards and notification mails."""
    detail = views.run_detail(kit.engine, run_id)
    if detail is None:
        raise ApiError(404, f"run {run_id} does not exist")
    return detail


@router.post(
    "/api/runs",
    tags=["runs"],
    status_code=201,
    response_model=None,
    responses={
        **ok(sc.Admission, "Admitted: Running, or Scheduled with what it waits for.", 201),
        409: {"model": sc.Rejection, "description": "Rejected by the rules, with the reason."},
        **AUTH,
        **errors(
            400,
            404,
            413,
            422,
            unchecked="re-aggregation parameters that do not parse (M4: the bad token is "
            "named); " + NUL,
        ),
    },
)
def api_run_job(kit: KitDep, who: Operator, body: sc.RunRequest) -> JSONResponse:
    """Run a job now (M1): Running, Scheduled (with the reason) or Rejected (with the
    reason; answered 409). Forcing (M7) needs the admin role."""
    admission = kit.admit(body.job.value, body.params.strip(), body.force, who)
    reply = {
        "run_id": admission.run_id,
        "state": admission.state,
        "reason": admission.reason,
    }
    if admission.state == RunState.REJECTED:
        return JSONResponse({**reply, "error": admission.reason}, status_code=409)
    return JSONResponse(reply, status_code=201)


@router.post(
    "/api/runs/{run_id}/stop",
    tags=["runs"],
    response_model=None,
    responses={**ok(sc.Result, "Stop requested."), **AUTH, **errors(404, 409, 422)},
)
def api_stop(kit: KitDep, who: Operator, run_id: RunId) -> dict[str, str]:
    """Stop a Running run (M6): cooperative, then forced after the grace period."""
    return {"result": manager.stop_run(kit.engine, run_id, who.name)}


@router.post(
    "/api/runs/{run_id}/cancel",
    tags=["runs"],
    response_model=None,
    responses={**ok(sc.Result, "Cancelled."), **AUTH, **errors(404, 409, 422)},
)
def api_cancel(kit: KitDep, who: Operator, run_id: RunId) -> dict[str, str]:
    """Cancel a Scheduled run (M6)."""
    return {"result": manager.cancel_run(kit.engine, run_id, who.name)}


@router.get("/jobs/running", response_class=HTMLResponse, include_in_schema=False)
def running_page(kit: KitDep, request: Request, who: PageViewer, category: str = "") -> Response:
    try:
        found = views.runs(kit.engine, views.RunQuery.parse("running", category=category))
    except GimError as error:
        raise HTTPException(400, str(error)) from None
    return kit.page(request, "running.html", who, runs=found, category=category)


@router.get("/jobs/history", response_class=HTMLResponse, include_in_schema=False)
def history_page(kit: KitDep, request: Request, who: PageViewer) -> Response:
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
        found = views.page_of_runs(kit.engine, query)
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
    return kit.page(
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


@router.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
def run_page(kit: KitDep, request: Request, who: PageViewer, run_id: RunId) -> Response:
    detail = views.run_detail(kit.engine, run_id)
    if detail is None:
        raise HTTPException(404, f"run {run_id} does not exist")
    return kit.page(request, "run.html", who, run=detail)


@router.get("/jobs/run", response_class=HTMLResponse, include_in_schema=False)
def run_job_form(kit: KitDep, request: Request, who: PageOperator, job: str = "") -> Response:
    return kit.page(
        request,
        "run_job.html",
        who,
        selected=job,
        params="",
        reply=None,
        startable=kit.startable(who),
    )


@router.post("/jobs/run", response_class=HTMLResponse, include_in_schema=False)
def run_job_page(
    kit: KitDep,
    request: Request,
    who: PageOperator,
    job: Annotated[str, Form(max_length=64)],
    params: Annotated[str, Form(max_length=2000)] = "",
    force: Annotated[bool, Form()] = False,
    at: Annotated[str, Form(max_length=40)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    try:
        if at.strip():  # P4: planned for the beat, admitted at that instant (M0)
            return _plan_from_page(kit, request, who, job, params, force, at, reason)
        admission = kit.admit(job, params.strip(), force, who)
        reply = {
            "run_id": admission.run_id,
            "state": admission.state,
            "reason": admission.reason,
        }
    except GimError as error:
        reply = {"run_id": None, "state": RunState.REJECTED, "reason": str(error)}
    except ApiError as error:
        reply = {"run_id": None, "state": RunState.REJECTED, "reason": error.detail}
    return kit.page(
        request,
        "run_job.html",
        who,
        selected=job,
        params=params,
        reply=reply,
        startable=kit.startable(who),
    )


def _plan_from_page(
    kit: Any,
    request: Request,
    who: Any,
    job: str,
    params: str,
    force: bool,
    at: str,
    reason: str,
) -> Response:
    from gim_tasks.runtime import run_at

    if force and not who.may("admin"):
        raise ApiError(403, "forcing a run (M7) needs the admin role")
    instant = run_at.instant_of(at, kit.tz_name())
    fid = run_at.plan_run(kit.engine, job, instant, reason, who.name, params, force)
    return kit.back(request, "/jobs/scheduled", f"{job} planned at {instant.isoformat()} ({fid})")


@router.post("/runs/{run_id}/stop", include_in_schema=False)
def stop_page(kit: KitDep, request: Request, who: PageOperator, run_id: RunId) -> Response:
    try:
        notice = manager.stop_run(kit.engine, run_id, who.name)
    except GimError as error:
        notice = str(error)
    return kit.back(request, request.headers.get("referer") or "/jobs/running", notice)


@router.post("/runs/{run_id}/cancel", include_in_schema=False)
def cancel_page(kit: KitDep, request: Request, who: PageOperator, run_id: RunId) -> Response:
    try:
        notice = manager.cancel_run(kit.engine, run_id, who.name)
    except GimError as error:
        notice = str(error)
    return kit.back(request, request.headers.get("referer") or "/jobs/scheduled", notice)
