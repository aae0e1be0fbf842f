"""Notifications and alerts: subscriptions per job, incidents (A3, O3)."""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from gim_tasks.errors import GimError
from gim_tasks.monitor import alerts, ledger, notify
from gim_tasks.schedule.jobs import BY_NAME, JOB_NAMES
from gim_tasks.web import auth
from gim_tasks.web import schemas as sc
from gim_tasks.web.access import Admin, PageAdmin, PageViewer, Viewer
from gim_tasks.web.kit import AUTH, NUL, KitDep, SubscriptionId
from gim_tasks.web.schemas import errors, ok

router = APIRouter()


@router.get(
    "/api/alerts",
    tags=["monitoring"],
    response_model=None,
    responses={**ok(list[sc.Incident], "Incidents, open first."), **AUTH, **errors(422)},
)
def api_alerts(
    kit: KitDep,
    who: Viewer,
    open_only: Annotated[bool, Query(alias="open", description="Only open incidents.")] = False,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> list[dict[str, Any]]:
    """Incidents (O3) with their mail and webhook deliveries, as `gim alerts --json`."""
    with kit.engine.connect() as conn:
        return alerts.list_incidents(conn, open_only, limit)


@router.get(
    "/api/notifications",
    tags=["notifications"],
    response_model=None,
    responses={**ok(list[sc.SubscriptionRow], "Subscriptions."), **AUTH},
)
def api_subscriptions(kit: KitDep, who: Viewer) -> list[dict[str, Any]]:
    """Notification subscriptions (A3)."""
    return [
        {**row, "created_at": row["created_at"].isoformat()}
        for row in notify.list_subscriptions(kit.engine)
    ]


@router.post(
    "/api/notifications",
    tags=["notifications"],
    status_code=201,
    response_model=None,
    responses={
        **ok(sc.Created, "Subscribed (or updated).", 201),
        **AUTH,
        **errors(400, 404, 409, 413, 422, unchecked=NUL),
    },
)
def api_subscribe(kit: KitDep, who: Admin, body: sc.Subscription) -> dict[str, Any]:
    """Subscribe a user or an address to a job's successes and/or errors (admin)."""
    sid = notify.add_subscription(
        kit.engine, body.job.value, body.recipient, body.on_success, body.on_error, who.name
    )
    return {"id": sid}


@router.delete(
    "/api/notifications/{subscription_id}",
    tags=["notifications"],
    response_model=None,
    responses={**ok(sc.Result, "Removed."), **AUTH, **errors(404, 422)},
)
def api_unsubscribe(kit: KitDep, who: Admin, subscription_id: SubscriptionId) -> dict[str, str]:
    """Remove a subscription (admin)."""
    notify.remove_subscription(kit.engine, subscription_id, who.name)
    return {"result": f"subscription {subscription_id} removed"}


@router.get("/alerts", response_class=HTMLResponse, include_in_schema=False)
def alerts_page(kit: KitDep, request: Request, who: PageViewer) -> Response:
    from gim_tasks.monitor import alerts, watchdog

    with kit.engine.connect() as conn:
        incidents = alerts.list_incidents(conn, limit=200)
        firings = [
            row
            for verdict in ("missed", "late")
            for row in ledger.query(
                conn,
                ledger.FiringQuery(
                    start=datetime.now(UTC) - timedelta(hours=24), verdict=verdict, limit=200
                ),
            )
        ]
    tick, leader = watchdog.beat_heartbeat(kit.redis())
    return kit.page(
        request,
        "alerts.html",
        who,
        incidents=incidents,
        firings=sorted(firings, key=lambda row: row["planned_at"]),
        heartbeat=datetime.fromtimestamp(tick, UTC) if tick else None,
        leader=leader,
    )


@router.get("/notifications", response_class=HTMLResponse, include_in_schema=False)
def notifications_page(kit: KitDep, request: Request, who: PageViewer) -> Response:
    subscriptions = notify.list_subscriptions(kit.engine)
    return kit.page(request, "notifications.html", who, subscriptions=subscriptions)


@router.post("/notifications", include_in_schema=False)
def notifications_add(
    kit: KitDep,
    request: Request,
    who: PageAdmin,
    job: Annotated[str, Form(max_length=64)],
    recipient: Annotated[str, Form(max_length=320)],
    on_success: Annotated[bool, Form()] = False,
    on_error: Annotated[bool, Form()] = False,
) -> Response:
    try:
        notify.add_subscription(kit.engine, job, recipient, on_success, on_error, who.name)
        notice = f"{recipient} is notified of {job}"
    except GimError as error:
        notice = f"not saved: {error}"
    return kit.back(request, "/notifications", notice)


@router.get("/jobs/{job}/notifications", response_class=HTMLResponse, include_in_schema=False)
def job_notifications_page(kit: KitDep, request: Request, who: PageViewer, job: str) -> Response:
    """Alma's "Email notifications" of one job (A3): its subscribers with Send on success
    and Send on error; admins add users (those with an address) or addresses and save."""
    if job not in JOB_NAMES:
        raise HTTPException(404, f"unknown job '{job}'; jobs are {', '.join(JOB_NAMES)}")
    subscriptions = notify.list_subscriptions(kit.engine, job)
    taken = {s["recipient"] for s in subscriptions}
    users = [u for u in auth.list_users(kit.engine) if u["email"] and u["name"] not in taken]
    return kit.page(
        request,
        "job_notifications.html",
        who,
        job=job,
        category=BY_NAME[job].category,
        subscriptions=subscriptions,
        users=users,
    )


@router.post("/jobs/{job}/notifications", include_in_schema=False)
async def job_notifications_save(
    kit: KitDep, request: Request, who: PageAdmin, job: str
) -> Response:
    form = await request.form()

    def flag(name: str) -> bool:
        return form.get(name) == "true"

    target = f"/jobs/{quote(job)}/notifications"
    try:
        keep = {}
        for text in form.getlist("sub"):
            if not isinstance(text, str) or not text.isdigit():
                raise GimError(f"subscription id '{text}' is not a number")
            number = int(text)
            remove = flag(f"remove_{number}")
            keep[number] = (
                flag(f"success_{number}") and not remove,
                flag(f"error_{number}") and not remove,
            )
        add = []
        for prefix in ("add_user", "add_email"):
            recipient = form.get(prefix)
            if isinstance(recipient, str) and recipient.strip():
                add.append((recipient, flag(f"{prefix}_success"), flag(f"{prefix}_error")))
        changed, removed, added = await run_in_threadpool(
            notify.save_job_subscriptions, kit.engine, job, keep, add, who.name
        )
        notice = f"saved: {added} added, {changed} changed, {removed} removed"
    except GimError as error:
        notice = f"not saved: {error}"
    return kit.back(request, target, notice)


@router.post("/notifications/{subscription_id}/delete", include_in_schema=False)
def notifications_delete(
    kit: KitDep, request: Request, who: PageAdmin, subscription_id: SubscriptionId
) -> Response:
    try:
        notify.remove_subscription(kit.engine, subscription_id, who.name)
        notice = "subscription removed"
    except GimError as error:
        notice = str(error)
    return kit.back(request, "/notifications", notice)
