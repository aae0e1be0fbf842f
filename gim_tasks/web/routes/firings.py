"""Firings and the Timeline: the ledger, the plan drawn, a schedule change previewed (O1, A7)."""

from datetime import UTC, datetime, timedelta
from datetime import date as datetime_date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException

from gim_tasks.lifecycle import VERDICTS
from gim_tasks.monitor import ledger
from gim_tasks.options import store
from gim_tasks.options.registry import OptionError
from gim_tasks.web import schemas as sc
from gim_tasks.web.access import Admin, PageAdmin, PageViewer, Viewer
from gim_tasks.web.kit import AUTH, NUL, ApiError, KitDep, day_query, plain_days
from gim_tasks.web.schemas import errors, ok

router = APIRouter()


@router.get(
    "/api/firings",
    tags=["monitoring"],
    response_model=None,
    responses={
        **ok(list[sc.Firing], "Ledger rows, oldest first."),
        **AUTH,
        **errors(
            400, 422, unchecked="a day that does not exist (2026-02-30); `to` not after `from`."
        ),
    },
)
def api_firings(
    kit: KitDep,
    who: Viewer,
    job: Annotated[sc.JobName | None, Query()] = None,
    since: Annotated[
        str | None,
        Query(
            alias="from",
            description="YYYY-MM-DD or YYYY-MM-DDTHH:MM in the schedule's zone, or an ISO "
            "instant; 1970 to 2999; default: 24 hours ago.",
            pattern=sc.WHEN_PATTERN,
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(alias="to", description="Before this; as `from`.", pattern=sc.WHEN_PATTERN),
    ] = None,
    verdict: Annotated[
        str | None,
        Query(
            pattern=sc.csv_pattern((*VERDICTS, "pending")),
            description="One verdict, or pending (not decided yet).",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100000)] = 500,
) -> list[dict[str, Any]]:
    """The firing ledger (O1), as `gim firings --json`: every planned firing with its
    verdict (on-time, late, held, skipped, blocked, missed), lag, reason and run."""
    with kit.engine.connect() as conn:
        tz_name = store.load_options(conn).schedule().timezone
        query = ledger.firing_query(
            job.value if job else None, since, until, verdict, limit, tz_name
        )
        return ledger.query(conn, query)


@router.get(
    "/api/timeline",
    tags=["monitoring"],
    response_model=None,
    responses={**ok(sc.TimelineReply, "Lanes per job."), **AUTH, **errors(400, 422)},
)
def api_timeline(
    kit: KitDep,
    who: Viewer,
    request: Request,
    start: Annotated[
        datetime_date | None,
        day_query(
            "First local day, YYYY-MM-DD from 1970 to 2999 (default: today in the schedule's zone)."
        ),
    ] = None,
    days: Annotated[int, Query(ge=1, le=7, description="Days: 1 to 7.")] = 1,
) -> dict[str, Any]:
    """The Timeline (A7) as data: per job, planned firings (with the ledger's verdict),
    aggregation windows and runs (with state and R4 outcome) of the period."""
    from gim_tasks.monitor import timeline

    plain_days(request, "start")
    now = datetime.now(UTC)
    with kit.engine.connect() as conn:
        options = store.load_options(conn).schedule()
        try:
            drawn = timeline.load(conn, options, start or timeline.today(options, now), days, now)
        except ValueError as error:
            raise ApiError(400, str(error)) from None
    return drawn.as_dict()


@router.post(
    "/api/schedule/preview",
    tags=["options"],
    response_model=None,
    responses={
        **ok(sc.SchedulePreviewReply, "The plan and the check."),
        **AUTH,
        **errors(
            400,
            413,
            422,
            unchecked="an option value its pattern does not state: an integer out of "
            "range, a cron, a time zone name, a duration; " + NUL,
        ),
    },
)
def api_schedule_preview(kit: KitDep, who: Admin, body: sc.SchedulePreview) -> dict[str, Any]:
    """Preview a `[schedule]` change (A7): the planned firings of the period with the given
    values (as `gim schedule plan`) and the configuration check's findings. Nothing is
    stored."""
    from gim_tasks.monitor import timeline
    from gim_tasks.runtime import holds
    from gim_tasks.schedule import plan

    now = datetime.now(UTC)
    with kit.engine.connect() as conn:
        current = store.load_options(conn)
        held_now = holds.load(conn, now)
    changed, report = timeline.preview(current, dict(body.values))
    options = changed.schedule()
    start, end = timeline.period(options, body.start or timeline.today(options, now), body.days)
    events = plan.plan(options, start, end)
    held = ledger.held_starts(options, held_now, events) if held_now else {}
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "events": [
            {**event.as_dict(), **({"held": held[i]} if i in held else {})}
            for i, event in enumerate(events)
        ],
        "findings": [finding.as_dict() for finding in report.findings],
    }


@router.get("/timeline", response_class=HTMLResponse, include_in_schema=False)
def timeline_page(
    kit: KitDep,
    request: Request,
    who: PageViewer,
    start: Annotated[datetime_date | None, Query()] = None,
    days: Annotated[int, Query(ge=1, le=7)] = 1,
) -> Response:
    from gim_tasks.monitor import timeline

    now = datetime.now(UTC)
    with kit.engine.connect() as conn:
        options = store.load_options(conn).schedule()
        day = start or timeline.today(options, now)
        try:
            drawn = timeline.load(conn, options, day, days, now)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
    step = timedelta(days=days)

    def link(at: datetime_date) -> str:
        return "/timeline?" + urlencode({"start": at.isoformat(), "days": days})

    return kit.page(
        request,
        "timeline.html",
        who,
        timeline=drawn,
        svg=timeline.svg(drawn),
        day=day,
        days=days,
        previous=link(day - step),
        following=link(day + step),
        tz=options.timezone,
    )


@router.get("/options/preview", response_class=HTMLResponse, include_in_schema=False)
def schedule_preview_page(kit: KitDep, request: Request, who: PageAdmin) -> Response:
    """A7: the plan of a day with changed [schedule] values beside the current one,
    and the configuration check's findings; nothing is stored."""
    from gim_tasks.monitor import timeline
    from gim_tasks.options.registry import OPTIONS

    now = datetime.now(UTC)
    names = [spec.name for spec in OPTIONS if spec.section == "schedule"]
    with kit.engine.connect() as conn:
        current = store.load_options(conn)
    values = {
        name: request.query_params[name].strip()
        for name in names
        if name in request.query_params
        and request.query_params[name].strip() != current.text("schedule", name)
    }
    try:
        changed, report = timeline.preview(current, values)
        day = (
            datetime_date.fromisoformat(request.query_params["day"])
            if request.query_params.get("day")
            else timeline.today(current.schedule(), now)
        )
        before = timeline.planned_timeline(current.schedule(), day, 1, now)
        after = timeline.planned_timeline(changed.schedule(), day, 1, now)
    except (OptionError, ValueError) as error:  # a day outside 1970-2999 too (issue 41)
        raise HTTPException(400, str(error)) from None

    def count(drawn: Any) -> int:
        return sum(1 for items in drawn.lanes.values() for i in items if i.kind == "planned")

    return kit.page(
        request,
        "schedule_preview.html",
        who,
        changes=[(name, current.text("schedule", name), value) for name, value in values.items()],
        report=report,
        day=day,
        zone=changed.schedule().timezone,
        current=timeline.svg(before, runs_clickable=False),
        proposed=timeline.svg(after, runs_clickable=False),
        current_count=count(before),
        proposed_count=count(after),
    )
