"""Back-fills (SPEC B1): the API and the Back-fills page (progress per day and step, time left,
pause, resume and cancel for operators). The rules live in ``gim_tasks.runtime.backfills``."""

from datetime import date as datetime_date
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response

from gim_tasks.errors import GimError, local_date
from gim_tasks.runtime import backfills
from gim_tasks.schedule.backfill import MODES
from gim_tasks.schedule.backfill import Request as BackfillRequest
from gim_tasks.web import schemas as sc
from gim_tasks.web.access import Operator, PageOperator, PageViewer, Viewer
from gim_tasks.web.kit import AUTH, KitDep
from gim_tasks.web.schemas import errors, ok

router = APIRouter()

IdPath = Annotated[int, Path(ge=1, le=2**62, description="The back-fill's id.")]
_REFUSED = (
    "a range not in the past, over 366 days or upside down; a day whose facts were purged "
    "(D5, naming the retention option); nothing to replay in the reprocess mode"
)


@router.get(
    "/api/backfills",
    tags=["backfills"],
    response_model=None,
    responses={**ok(list[sc.Backfill], "Newest first, with progress."), **AUTH},
)
def api_backfills(kit: KitDep, who: Viewer) -> list[dict[str, Any]]:
    """Back-fills (B1), newest first: state, progress per step, time left, why the next item
    waits. As `gim backfill list --json`."""
    return backfills.listing(kit.engine)


@router.get(
    "/api/backfills/{backfill_id}",
    tags=["backfills"],
    response_model=None,
    responses={**ok(sc.Backfill, "With its items."), **AUTH, **errors(404, 422)},
)
def api_backfill(kit: KitDep, who: Viewer, backfill_id: IdPath) -> dict[str, Any]:
    """One back-fill with each item's run, attempt and status. As `gim backfill show`."""
    return backfills.show(kit.engine, backfill_id)


@router.post(
    "/api/backfills",
    tags=["backfills"],
    status_code=201,
    response_model=None,
    responses={
        **ok(sc.Backfill, "Created (or, with dry_run, what it would do).", 201),
        **AUTH,
        **errors(400, 413, 422, unchecked=_REFUSED),
    },
)
def api_create_backfill(kit: KitDep, who: Operator, body: sc.BackfillRequest) -> dict[str, Any]:
    """Create a back-fill (B1, operators): replay aggregation and export over past days at the
    lowest priority; `dry_run` lists the items and the estimate and records nothing."""
    request = BackfillRequest(
        body.from_day,
        body.to_day,
        tuple(body.steps),
        body.reprocess,
        body.order,
        body.max_parallel,
        body.reason,
    )
    return backfills.create(kit.engine, request, who.name, dry_run=body.dry_run)


def _change_api(kit: Any, who: Any, backfill_id: int, action: str) -> dict[str, str]:
    return {"result": backfills.change(kit.engine, backfill_id, action, who.name)}


_CHANGE = {**AUTH, **errors(404, 409, 422)}


@router.post(
    "/api/backfills/{backfill_id}/pause",
    tags=["backfills"],
    response_model=None,
    responses={**ok(sc.Result, "Paused."), **_CHANGE},
)
def api_pause_backfill(kit: KitDep, who: Operator, backfill_id: IdPath) -> dict[str, str]:
    """Pause (operators): no new item starts; running items finish; 409 unless active."""
    return _change_api(kit, who, backfill_id, "pause")


@router.post(
    "/api/backfills/{backfill_id}/resume",
    tags=["backfills"],
    response_model=None,
    responses={**ok(sc.Result, "Resumed."), **_CHANGE},
)
def api_resume_backfill(kit: KitDep, who: Operator, backfill_id: IdPath) -> dict[str, str]:
    """Resume where it stopped (operators); 409 unless paused."""
    return _change_api(kit, who, backfill_id, "resume")


@router.post(
    "/api/backfills/{backfill_id}/cancel",
    tags=["backfills"],
    response_model=None,
    responses={**ok(sc.Result, "Cancelled."), **_CHANGE},
)
def api_cancel_backfill(kit: KitDep, who: Operator, backfill_id: IdPath) -> dict[str, str]:
    """Cancel (operators): no new item; running items stop at their next commit (stop kind
    operator); 409 when it has ended."""
    return _change_api(kit, who, backfill_id, "cancel")


# ----- the Back-fills page ---------------------------------------------------------------------


@router.get("/backfills", response_class=HTMLResponse, include_in_schema=False)
def backfills_page(kit: KitDep, request: Request, who: PageViewer) -> Response:
    return kit.page(
        request,
        "backfills.html",
        who,
        found=backfills.listing(kit.engine),
        modes=MODES,
    )


@router.get("/backfills/{backfill_id}", response_class=HTMLResponse, include_in_schema=False)
def backfill_page(kit: KitDep, request: Request, who: PageViewer, backfill_id: int) -> Response:
    try:
        found = backfills.show(kit.engine, backfill_id)
    except GimError as error:
        return kit.back(request, "/backfills", str(error))
    return kit.page(request, "backfill.html", who, b=found)


def _day(text: str, what: str) -> datetime_date:
    return local_date(text, what)


@router.post("/backfills", include_in_schema=False)
def create_backfill_page(
    kit: KitDep,
    request: Request,
    who: PageOperator,
    first: Annotated[str, Form(max_length=10)] = "",
    last: Annotated[str, Form(max_length=10)] = "",
    steps: Annotated[list[str] | None, Form()] = None,
    reprocess: Annotated[str, Form(max_length=10)] = "missing",
    order: Annotated[str, Form(max_length=10)] = "oldest",
    max_parallel: Annotated[str, Form(max_length=3)] = "1",
    reason: Annotated[str, Form(max_length=500)] = "",
    dry_run: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    try:
        if not max_parallel.strip().isdigit():
            raise GimError(f"max parallel '{max_parallel}' is not a number from 1 to 16")
        wanted = BackfillRequest(
            _day(first, "from"),
            _day(last, "to"),
            tuple(steps or ()),
            reprocess,
            order,
            int(max_parallel),
            reason,
        )
        found = backfills.create(kit.engine, wanted, who.name, dry_run=bool(dry_run))
    except GimError as error:
        return kit.back(request, "/backfills", f"back-fill not created: {error}")
    if dry_run:
        return kit.page(request, "backfill.html", who, b=found)
    return kit.back(
        request,
        f"/backfills/{found['id']}",
        f"back-fill {found['id']} created: {len(found['items'])} item(s)",
    )


@router.post("/backfills/{backfill_id}/{action}", include_in_schema=False)
def change_backfill_page(
    kit: KitDep, request: Request, who: PageOperator, backfill_id: int, action: str
) -> Response:
    try:
        notice = backfills.change(kit.engine, backfill_id, action, who.name)
    except GimError as error:
        notice = str(error)
    return kit.back(request, f"/backfills/{backfill_id}", notice)
