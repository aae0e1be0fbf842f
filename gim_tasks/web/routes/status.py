"""Status: the summary, ETL and aggregation status, /metrics (A4, O5)."""

from datetime import date as datetime_date
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from gim_tasks.errors import GimError, local_date
from gim_tasks.monitor import mart_status
from gim_tasks.web import schemas as sc
from gim_tasks.web import views
from gim_tasks.web.access import Admin, PageAdmin, PageViewer, Viewer
from gim_tasks.web.kit import AUTH, KitDep, day_query, plain_days
from gim_tasks.web.schemas import errors, ok

router = APIRouter()


@router.get(
    "/api/summary",
    tags=["jobs"],
    response_model=None,
    responses={**ok(sc.Summary, "Per category."), **AUTH, **errors(422)},
)
def api_summary(
    kit: KitDep, who: Viewer, days: Annotated[int, Query(ge=1, le=366)] = 7
) -> dict[str, Any]:
    """Status summary (A4): per category, runs and failures of the last N days."""
    return views.summary(kit.engine, days)


@router.get(
    "/api/etl/status",
    tags=["status"],
    response_model=None,
    responses={**ok(sc.EtlStatus, "ETL status."), **AUTH},
)
def api_etl_status(kit: KitDep, who: Viewer) -> dict[str, Any]:
    """What `gim etl status --json` shows: per IDB and table extraction marks and rows
    waiting for Transform, segment facts and discards per IDB, lag, fact counts, the last
    Extract and Transform runs."""
    return mart_status.etl_status(kit.engine)


@router.get(
    "/api/aggregate/status",
    tags=["status"],
    response_model=None,
    responses={**ok(sc.AggregateStatus, "Aggregation status."), **AUTH},
)
def api_aggregate_status(kit: KitDep, who: Viewer) -> dict[str, Any]:
    """What `gim aggregate status --json` shows: pending intervals, queued re-aggregation
    requests, the last batch's duration, recent runs, freshness per hierarchy."""
    return mart_status.aggregate_status(kit.engine)


@router.get(
    "/api/days",
    tags=["status"],
    response_model=None,
    responses={**ok(sc.DaysReply, "Local data days, newest first."), **AUTH, **errors(422)},
)
def api_days(
    kit: KitDep, who: Viewer, days: Annotated[int, Query(ge=1, le=366)] = 14
) -> dict[str, Any]:
    """Is yesterday complete? (Q1, Q2): per local data day, each live-fed fact table, the
    aggregation and the export as complete, pending, purged or n/a, from the mart's marks;
    its ready-by deadline. As `gim days --json`."""
    from gim_tasks.monitor import days as data_days

    return data_days.listing(kit.engine, days)


@router.get("/days", response_class=HTMLResponse, include_in_schema=False)
def days_page(kit: KitDep, request: Request, who: PageViewer) -> Response:
    from gim_tasks.monitor import days as data_days

    try:
        count = int(request.query_params.get("days") or 14)
    except ValueError:
        count = 14
    found = data_days.listing(kit.engine, max(1, min(count, 366)))
    # The strip keeps its default period: 90 grid days are not 90 days of run summary.
    return kit.page(request, "days.html", who, grid=found, count=count, summary_days=7)


@router.get(
    "/api/checks",
    tags=["status"],
    response_model=None,
    responses={**ok(list[sc.CheckVerdict], "Newest day first."), **AUTH, **errors(400, 422)},
)
def api_checks(
    kit: KitDep,
    who: Viewer,
    request: Request,
    day: Annotated[datetime_date | None, day_query("Only this local day, YYYY-MM-DD.")] = None,
    failed: Annotated[bool, Query(description="Only failing verdicts.")] = False,
) -> list[dict[str, Any]]:
    """Quality checks (Q3): the newest verdict of each check on each subject and interval;
    `holds`: a failing `error` verdict no admin overrode, which holds the export of what it
    covers. As `gim checks --json`."""
    from gim_tasks.monitor import checks

    plain_days(request, "day")  # (a bare number would be taken for Unix time)
    with kit.engine.connect() as conn:
        return checks.listing(conn, day, failed)


@router.post(
    "/api/checks/override",
    tags=["status"],
    response_model=None,
    responses={
        **ok(sc.Result, "Overridden."),
        **AUTH,
        **errors(400, 404, 413, 422, unchecked="a reason of blanks only"),
    },
)
def api_check_override(kit: KitDep, who: Admin, body: sc.CheckOverrideRequest) -> dict[str, str]:
    """Override the failing verdicts of a check on a day (Q3, admins): the export publishes
    what they held at its next run; audited as `check-override` with the reason."""
    from gim_tasks.monitor import checks

    n = checks.override(kit.engine, body.day, body.check, body.reason, who.name)
    return {"result": f"{n} failing {body.check} verdict(s) of {body.day} overridden"}


@router.post("/days/override", include_in_schema=False)
def check_override_page(
    kit: KitDep,
    request: Request,
    who: PageAdmin,
    day: Annotated[str, Form(max_length=10)],
    check: Annotated[str, Form(max_length=40)],
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    from gim_tasks.monitor import checks

    try:
        n = checks.override(kit.engine, local_date(day, "day"), check, reason, who.name)
        notice = f"{n} failing {check} verdict(s) of {day} overridden"
    except GimError as error:
        notice = f"not overridden: {error}"
    return kit.back(request, "/days", notice)


@router.get("/metrics", include_in_schema=False)
def metrics(kit: KitDep, who: Viewer) -> Response:
    """Prometheus metrics (O5), read from PostgreSQL and Redis on each scrape; any API
    token (viewer) may scrape."""
    from gim_tasks.monitor import metrics

    body = metrics.exposition(kit.engine, kit.redis())
    return Response(body, media_type=metrics.CONTENT_TYPE)


@router.get("/etl", response_class=HTMLResponse, include_in_schema=False)
def etl_page(kit: KitDep, request: Request, who: PageViewer) -> Response:
    return kit.page(request, "etl.html", who, etl=mart_status.etl_status(kit.engine))


@router.get("/aggregation", response_class=HTMLResponse, include_in_schema=False)
def aggregation_page(kit: KitDep, request: Request, who: PageViewer) -> Response:
    return kit.page(request, "aggregation.html", who, agg=mart_status.aggregate_status(kit.engine))
