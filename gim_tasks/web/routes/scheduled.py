"""The Scheduled tab: every job of the catalogue with its Next Run (A1)."""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException

from gim_tasks.errors import GimError
from gim_tasks.web import schemas as sc
from gim_tasks.web import views
from gim_tasks.web.access import PageViewer, Viewer
from gim_tasks.web.kit import AUTH, KitDep, text
from gim_tasks.web.schemas import errors, ok

router = APIRouter()


@router.get(
    "/api/jobs/scheduled",
    tags=["jobs"],
    response_model=None,
    responses={**ok(list[sc.ScheduledJob], "One object per job."), **AUTH, **errors(422)},
)
def api_scheduled(
    kit: KitDep, who: Viewer, category: Annotated[sc.Category | None, Query()] = None
) -> list[dict[str, Any]]:
    """The Scheduled tab (A1): one object per job, Next Run in the schedule's zone."""
    return views.scheduled_jobs(kit.engine, datetime.now(UTC), text(category))


@router.get("/jobs/scheduled", response_class=HTMLResponse, include_in_schema=False)
def scheduled_page(kit: KitDep, request: Request, who: PageViewer, category: str = "") -> Response:
    try:
        rows = views.scheduled_jobs(kit.engine, datetime.now(UTC), category)
        queued = views.runs(kit.engine, views.RunQuery.parse("scheduled", category=category))
    except GimError as error:
        raise HTTPException(400, str(error)) from None
    from gim_tasks.runtime import run_at

    planned = run_at.planned(kit.engine)
    return kit.page(
        request, "scheduled.html", who, rows=rows, queued=queued, category=category, planned=planned
    )
