"""Operators' holds on the plan (P1-P3): pause and resume a job or every job, skip one firing,
blackout windows; the Scheduled list's Pause and Resume buttons."""

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import Response

from gim_tasks.errors import GimError, aware_instant
from gim_tasks.options import store
from gim_tasks.runtime import holds, run_at
from gim_tasks.schedule.holds import Blackout
from gim_tasks.web import schemas as sc
from gim_tasks.web.access import Admin, Operator, PageAdmin, PageOperator, Viewer
from gim_tasks.web.kit import AUTH, ApiError, KitDep, iso_row
from gim_tasks.web.schemas import errors, ok

router = APIRouter()

JobPath = Annotated[sc.JobName, Path(description="The job.")]
_REFUSED = (
    "a job without firings of its own (Transform follows Extract), an until not in the future"
)


def _json(found: dict[str, Any]) -> dict[str, Any]:
    """Instants as ISO text, as the document says."""
    return {key: [iso_row(row) for row in rows] for key, rows in found.items()}


@router.get(
    "/api/holds",
    tags=["holds"],
    response_model=None,
    responses={**ok(sc.HoldsReply, "Pauses, future skipped firings, blackouts."), **AUTH},
)
def api_holds(kit: KitDep, who: Viewer) -> dict[str, Any]:
    """Every operator hold in force (P1-P3)."""
    return _json(holds.listing(kit.engine))


def _pause(kit: Any, who: Any, job: str | None, body: sc.PauseRequest) -> dict[str, str]:
    done = holds.pause(kit.engine, job, body.reason, who.name, until=body.until, stop=body.stop)
    what = "every job" if job is None else job
    stopped = f"; stop requested for run(s) {', '.join(map(str, done.stopped))}"
    return {"result": f"{what} paused" + (stopped if done.stopped else "")}


@router.post(
    "/api/jobs/{job}/pause",
    tags=["holds"],
    response_model=None,
    responses={**ok(sc.Result, "Paused."), **AUTH, **errors(400, 413, 422, unchecked=_REFUSED)},
)
def api_pause(kit: KitDep, who: Operator, job: JobPath, body: sc.PauseRequest) -> dict[str, str]:
    """Pause a job (P1): its scheduled firings are judged `paused`; manual starts stay
    allowed."""
    return _pause(kit, who, job.value, body)


@router.post(
    "/api/pause",
    tags=["holds"],
    response_model=None,
    responses={
        **ok(sc.Result, "Every job paused."),
        **AUTH,
        **errors(400, 413, 422, unchecked="an until not in the future"),
    },
)
def api_pause_all(kit: KitDep, who: Operator, body: sc.PauseRequest) -> dict[str, str]:
    """Pause every job (P1); each job's own pause stays under it."""
    return _pause(kit, who, None, body)


@router.post(
    "/api/jobs/{job}/resume",
    tags=["holds"],
    response_model=None,
    responses={**ok(sc.Result, "Resumed."), **AUTH, **errors(409, 422)},
)
def api_resume(kit: KitDep, who: Operator, job: JobPath) -> dict[str, str]:
    """End a job's own pause (P1); 409 when it is not paused."""
    return {"result": holds.resume(kit.engine, job.value, who.name)}


@router.post(
    "/api/resume",
    tags=["holds"],
    response_model=None,
    responses={**ok(sc.Result, "The global pause ended."), **AUTH, **errors(409)},
)
def api_resume_all(kit: KitDep, who: Operator) -> dict[str, str]:
    """End the global pause (P1); each job's own pause stays."""
    return {"result": holds.resume(kit.engine, None, who.name)}


@router.post(
    "/api/jobs/{job}/skip",
    tags=["holds"],
    status_code=201,
    response_model=None,
    responses={
        **ok(sc.Skipped, "The firing will be skipped.", 201),
        **AUTH,
        **errors(
            400,
            409,
            413,
            422,
            unchecked="neither or both of at and firing_id; a past or unplanned firing (the "
            "error names the next planned ones)",
        ),
    },
)
def api_skip(kit: KitDep, who: Operator, job: JobPath, body: sc.SkipRequest) -> dict[str, str]:
    """Skip one future firing (P2): judged `operator-skip` in the ledger; 409 when it is
    skipped already."""
    with kit.engine.connect() as conn:
        options = store.load_options(conn).schedule()
    done = holds.skip(
        kit.engine, options, job.value, body.reason, who.name, at=body.at, firing=body.firing_id
    )
    return {"firing_id": done}


@router.post(
    "/api/blackouts",
    tags=["holds"],
    status_code=201,
    response_model=None,
    responses={
        **ok(sc.Result, "Added.", 201),
        **AUTH,
        **errors(
            400,
            409,
            413,
            422,
            unchecked="a kind without its fields, a local time that does not parse, a window "
            "that ends before it starts",
        ),
    },
)
def api_add_blackout(kit: KitDep, who: Admin, body: sc.BlackoutRequest) -> dict[str, str]:
    """Add a blackout window (P3, admin); 409 when the name is taken."""
    window = Blackout(
        body.name.strip(),
        body.kind,
        body.reason,
        tuple(job.value for job in body.jobs),
        body.starts,
        body.ends,
        body.weekly,
        body.days,
    )
    holds.add_blackout(kit.engine, window, who.name)
    return {"result": f"blackout '{window.name}' added: {window.describe()}"}


@router.delete(
    "/api/blackouts/{name}",
    tags=["holds"],
    response_model=None,
    responses={**ok(sc.Result, "Removed."), **AUTH, **errors(404, 422)},
)
def api_remove_blackout(
    kit: KitDep, who: Admin, name: Annotated[str, Path(max_length=80)]
) -> dict[str, str]:
    """Remove a blackout window (admin)."""
    holds.remove_blackout(kit.engine, name, who.name)
    return {"result": f"blackout '{name}' removed"}


@router.get(
    "/api/planned-runs",
    tags=["runs"],
    response_model=None,
    responses={**ok(list[sc.PlannedRun], "Runs planned at a set time, soonest first."), **AUTH},
)
def api_planned_runs(kit: KitDep, who: Viewer) -> list[dict[str, Any]]:
    """P4: the runs planned at a set time that have not started."""
    return _json({"rows": run_at.planned(kit.engine)})["rows"]


@router.post(
    "/api/planned-runs",
    tags=["runs"],
    status_code=201,
    response_model=None,
    responses={
        **ok(sc.Skipped, "Planned: its firing id (at:JOB:ISO).", 201),
        **AUTH,
        **errors(
            400,
            403,
            409,
            413,
            422,
            unchecked="an instant not in the future or over a year ahead, parameters a job "
            "does not take (M4), a non-manual job without force (M7)",
        ),
    },
)
def api_plan_run(kit: KitDep, who: Operator, body: sc.PlannedRunRequest) -> dict[str, str]:
    """Plan a manual run at a set instant (P4): in the ledger and on the Timeline; the beat
    admits it at that instant by the same decision as every manual start (M0); 409 when the
    job is planned at that instant already. Forcing (M7) needs the admin role."""
    if body.force and not who.may("admin"):
        raise ApiError(403, "forcing a run (M7) needs the admin role")
    fid = run_at.plan_run(
        kit.engine, body.job.value, body.at, body.reason, who.name, body.params, body.force
    )
    return {"firing_id": fid}


@router.delete(
    "/api/planned-runs/{firing_id}",
    tags=["runs"],
    response_model=None,
    responses={**ok(sc.Result, "Cancelled."), **AUTH, **errors(404, 409, 422)},
)
def api_cancel_planned(
    kit: KitDep, who: Operator, firing_id: Annotated[str, Path(max_length=200)]
) -> dict[str, str]:
    """Cancel a planned run before its instant (P4: verdict `cancelled`); 409 once started."""
    return {"result": run_at.cancel_planned(kit.engine, firing_id, who.name)}


# ----- the Scheduled list's buttons ----------------------------------------------------------


@router.post("/jobs/{job}/pause", include_in_schema=False)
def pause_page(
    kit: KitDep,
    request: Request,
    who: PageOperator,
    job: str,
    reason: Annotated[str, Form(max_length=500)] = "",
    until: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    try:
        instant = aware_instant(until, "until") if until.strip() else None
        holds.pause(kit.engine, job, reason, who.name, until=instant)
    except GimError as error:
        return kit.back(request, "/jobs/scheduled", f"{job} not paused: {error}")
    return kit.back(request, "/jobs/scheduled", f"{job} paused: {reason.strip()}")


@router.post("/planned-runs/cancel", include_in_schema=False)
def cancel_planned_page(
    kit: KitDep,
    request: Request,
    who: PageOperator,
    firing_id: Annotated[str, Form(max_length=200)],
) -> Response:
    try:
        notice = run_at.cancel_planned(kit.engine, firing_id, who.name)
    except GimError as error:
        notice = str(error)
    return kit.back(request, "/jobs/scheduled", notice)


@router.post("/blackouts", include_in_schema=False)
def add_blackout_page(
    kit: KitDep,
    request: Request,
    who: PageAdmin,
    name: Annotated[str, Form(max_length=80)],
    kind: Annotated[str, Form(max_length=12)],
    reason: Annotated[str, Form(max_length=500)] = "",
    starts: Annotated[str, Form(max_length=16)] = "",
    ends: Annotated[str, Form(max_length=16)] = "",
    weekly: Annotated[str, Form(max_length=40)] = "",
    days: Annotated[str, Form(max_length=2)] = "",
    jobs: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    target = "/options#blackouts"
    try:
        if kind not in ("once", "weekly", "month-end"):
            raise GimError(f"kind '{kind}'; allowed: once, weekly, month-end")
        if days.strip() and not days.strip().isdigit():
            raise GimError(f"last days '{days}' is not a number from 1 to 27")
        window = Blackout(
            name.strip(),
            kind,  # type: ignore[arg-type]
            reason,
            tuple(j.strip() for j in jobs.split(",") if j.strip()),
            starts.strip() or None,
            ends.strip() or None,
            weekly.strip() or None,
            int(days) if days.strip() else None,
        )
        holds.add_blackout(kit.engine, window, who.name)
    except GimError as error:
        return kit.back(request, target, f"blackout not added: {error}")
    return kit.back(request, target, f"blackout '{window.name}' added: {window.describe()}")


@router.post("/blackouts/delete", include_in_schema=False)
def remove_blackout_page(
    kit: KitDep, request: Request, who: PageAdmin, name: Annotated[str, Form(max_length=80)]
) -> Response:
    try:
        holds.remove_blackout(kit.engine, name, who.name)
        notice = f"blackout '{name}' removed"
    except GimError as error:
        notice = str(error)
    return kit.back(request, "/options#blackouts", notice)


@router.post("/jobs/{job}/resume", include_in_schema=False)
def resume_page(kit: KitDep, request: Request, who: PageOperator, job: str) -> Response:
    try:
        notice = holds.resume(kit.engine, job, who.name)
    except GimError as error:
        notice = str(error)
    return kit.back(request, "/jobs/scheduled", notice)
