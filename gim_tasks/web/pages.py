"""The Monitor Jobs pages (SPEC §7): server-rendered, no JavaScript needed. Registered by
:func:`gim_tasks.web.app.create_app`, which owns the security (roles, CSRF, sessions, headers)
and hands these routes what they share in a :class:`~gim_tasks.web.kit.Kit`."""

import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from datetime import date as datetime_date
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from gim_tasks.errors import GimError
from gim_tasks.lifecycle import RunState
from gim_tasks.monitor import mart_status, notify
from gim_tasks.options import store
from gim_tasks.options.registry import OptionError
from gim_tasks.runtime import manager
from gim_tasks.schedule.jobs import BY_NAME, JOB_NAMES
from gim_tasks.web import auth, views
from gim_tasks.web.access import PageAdmin, PageOperator, PageViewer, csrf_ok
from gim_tasks.web.kit import HISTORY_PAGE, ApiError, Kit, RunId, SubscriptionId, safe_next
from gim_tasks.web.security import Busy, Throttled

log = logging.getLogger("gim_tasks.web.pages")


def register(app: FastAPI, kit: Kit) -> None:
    """Add the pages to ``app``."""
    engine, settings, templates = kit.engine, kit.settings, kit.templates
    throttle, hash_slots = kit.throttle, kit.hash_slots
    page, back, admit, startable = kit.page, kit.back, kit.admit, kit.startable
    option_rows = kit.option_rows
    # ----- public ----------------------------------------------------------------------------

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str = "/jobs/scheduled") -> Response:
        request.session.setdefault("csrf", secrets.token_urlsafe(32))
        return templates.TemplateResponse(
            request,
            "login.html",
            {"next": safe_next(next), "csrf": request.session["csrf"], "user": None},
        )

    @app.post("/login", include_in_schema=False)
    def login(
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
            return templates.TemplateResponse(
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
            reservation = throttle.reserve(name, client)
        except Throttled as error:
            log.warning("login refused for %r from %s: %s", name[:64], client, error)
            return refuse(str(error), 429, {"Retry-After": str(error.retry_after)})
        if reservation.delay:  # an address with many failures is slowed, not refused
            time.sleep(reservation.delay)
        try:
            with hash_slots.slot():
                who = auth.authenticate(engine, name, password)
        except Busy as error:
            return refuse(str(error), 503, {"Retry-After": "5"})
        if who is None:
            log.warning("failed login for %r from %s", name[:64], client)
            return refuse("wrong user name or password", 401)
        throttle.succeeded(reservation, name, client)
        session_id = auth.create_session(engine, who.user_id, client, settings.web_session_hours)
        request.session.clear()  # a new session (and CSRF token) at every login
        request.session.update(sid=session_id, csrf=secrets.token_urlsafe(32))
        return RedirectResponse(safe_next(next), status_code=303)

    # ----- pages -----------------------------------------------------------------------------

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, who: PageViewer) -> Response:
        session_id = request.session.get("sid")
        if isinstance(session_id, str):
            auth.end_session(engine, session_id)  # the cookie, even copied, is no longer a session
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/", include_in_schema=False)
    def home(who: PageViewer) -> Response:
        return RedirectResponse("/jobs/scheduled", status_code=303)

    @app.get("/jobs/scheduled", response_class=HTMLResponse, include_in_schema=False)
    def scheduled_page(request: Request, who: PageViewer, category: str = "") -> Response:
        try:
            rows = views.scheduled_jobs(engine, datetime.now(UTC), category)
            queued = views.runs(engine, views.RunQuery.parse("scheduled", category=category))
        except GimError as error:
            raise HTTPException(400, str(error)) from None
        return page(request, "scheduled.html", who, rows=rows, queued=queued, category=category)

    @app.get("/jobs/running", response_class=HTMLResponse, include_in_schema=False)
    def running_page(request: Request, who: PageViewer, category: str = "") -> Response:
        try:
            found = views.runs(engine, views.RunQuery.parse("running", category=category))
        except GimError as error:
            raise HTTPException(400, str(error)) from None
        return page(request, "running.html", who, runs=found, category=category)

    @app.get("/jobs/history", response_class=HTMLResponse, include_in_schema=False)
    def history_page(request: Request, who: PageViewer) -> Response:
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
            found = views.page_of_runs(engine, query)
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
        return page(
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

    @app.get("/etl", response_class=HTMLResponse, include_in_schema=False)
    def etl_page(request: Request, who: PageViewer) -> Response:
        return page(request, "etl.html", who, etl=mart_status.etl_status(engine))

    @app.get("/timeline", response_class=HTMLResponse, include_in_schema=False)
    def timeline_page(
        request: Request,
        who: PageViewer,
        start: Annotated[datetime_date | None, Query()] = None,
        days: Annotated[int, Query(ge=1, le=7)] = 1,
    ) -> Response:
        from gim_tasks.monitor import timeline

        now = datetime.now(UTC)
        with engine.connect() as conn:
            options = store.load_options(conn).schedule()
            day = start or timeline.today(options, now)
            try:
                drawn = timeline.load(conn, options, day, days, now)
            except ValueError as error:
                raise HTTPException(400, str(error)) from None
        step = timedelta(days=days)

        def link(at: datetime_date) -> str:
            return "/timeline?" + urlencode({"start": at.isoformat(), "days": days})

        return page(
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

    @app.get("/options/preview", response_class=HTMLResponse, include_in_schema=False)
    def schedule_preview_page(request: Request, who: PageAdmin) -> Response:
        """A7: the plan of a day with changed [schedule] values beside the current one,
        and the configuration check's findings; nothing is stored."""
        from gim_tasks.monitor import timeline
        from gim_tasks.options.registry import OPTIONS

        now = datetime.now(UTC)
        names = [spec.name for spec in OPTIONS if spec.section == "schedule"]
        with engine.connect() as conn:
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

        return page(
            request,
            "schedule_preview.html",
            who,
            changes=[
                (name, current.text("schedule", name), value) for name, value in values.items()
            ],
            report=report,
            day=day,
            zone=changed.schedule().timezone,
            current=timeline.svg(before, runs_clickable=False),
            proposed=timeline.svg(after, runs_clickable=False),
            current_count=count(before),
            proposed_count=count(after),
        )

    @app.get("/alerts", response_class=HTMLResponse, include_in_schema=False)
    def alerts_page(request: Request, who: PageViewer) -> Response:
        from gim_tasks.monitor import alerts, ledger, watchdog

        with engine.connect() as conn:
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
        return page(
            request,
            "alerts.html",
            who,
            incidents=incidents,
            firings=sorted(firings, key=lambda row: row["planned_at"]),
            heartbeat=datetime.fromtimestamp(tick, UTC) if tick else None,
            leader=leader,
        )

    @app.get("/aggregation", response_class=HTMLResponse, include_in_schema=False)
    def aggregation_page(request: Request, who: PageViewer) -> Response:
        return page(request, "aggregation.html", who, agg=mart_status.aggregate_status(engine))

    @app.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def run_page(request: Request, who: PageViewer, run_id: RunId) -> Response:
        detail = views.run_detail(engine, run_id)
        if detail is None:
            raise HTTPException(404, f"run {run_id} does not exist")
        return page(request, "run.html", who, run=detail)

    @app.get("/jobs/run", response_class=HTMLResponse, include_in_schema=False)
    def run_job_form(request: Request, who: PageOperator, job: str = "") -> Response:
        return page(
            request,
            "run_job.html",
            who,
            selected=job,
            params="",
            reply=None,
            startable=startable(who),
        )

    @app.post("/jobs/run", response_class=HTMLResponse, include_in_schema=False)
    def run_job_page(
        request: Request,
        who: PageOperator,
        job: Annotated[str, Form(max_length=64)],
        params: Annotated[str, Form(max_length=2000)] = "",
        force: Annotated[bool, Form()] = False,
    ) -> Response:
        try:
            admission = admit(job, params.strip(), force, who)
            reply = {
                "run_id": admission.run_id,
                "state": admission.state,
                "reason": admission.reason,
            }
        except GimError as error:
            reply = {"run_id": None, "state": RunState.REJECTED, "reason": str(error)}
        except ApiError as error:
            reply = {"run_id": None, "state": RunState.REJECTED, "reason": error.detail}
        return page(
            request,
            "run_job.html",
            who,
            selected=job,
            params=params,
            reply=reply,
            startable=startable(who),
        )

    @app.post("/runs/{run_id}/stop", include_in_schema=False)
    def stop_page(request: Request, who: PageOperator, run_id: RunId) -> Response:
        try:
            notice = manager.stop_run(engine, run_id, who.name)
        except GimError as error:
            notice = str(error)
        return back(request, request.headers.get("referer") or "/jobs/running", notice)

    @app.post("/runs/{run_id}/cancel", include_in_schema=False)
    def cancel_page(request: Request, who: PageOperator, run_id: RunId) -> Response:
        try:
            notice = manager.cancel_run(engine, run_id, who.name)
        except GimError as error:
            notice = str(error)
        return back(request, request.headers.get("referer") or "/jobs/scheduled", notice)

    @app.get("/options", response_class=HTMLResponse, include_in_schema=False)
    def options_page(request: Request, who: PageViewer) -> Response:
        rows, report = option_rows()
        return page(request, "options.html", who, options=rows, report=report)

    @app.post("/options", include_in_schema=False)
    def options_edit(
        request: Request,
        who: PageAdmin,
        section: Annotated[str, Form(max_length=64)],
        name: Annotated[str, Form(max_length=64)],
        value: Annotated[str, Form(max_length=2000)] = "",
        reset: Annotated[bool, Form()] = False,
    ) -> Response:
        try:
            if reset:
                update = store.unset_option(engine, section, name, who.name)
            else:
                update = store.set_option(
                    engine, section, name, value, who.name, settings.output_directory
                )
            notice = f"saved: {update}"
        except (GimError, OptionError) as error:
            notice = f"not saved: {error}"
        return back(request, "/options", notice)

    @app.get("/notifications", response_class=HTMLResponse, include_in_schema=False)
    def notifications_page(request: Request, who: PageViewer) -> Response:
        subscriptions = notify.list_subscriptions(engine)
        return page(request, "notifications.html", who, subscriptions=subscriptions)

    @app.post("/notifications", include_in_schema=False)
    def notifications_add(
        request: Request,
        who: PageAdmin,
        job: Annotated[str, Form(max_length=64)],
        recipient: Annotated[str, Form(max_length=320)],
        on_success: Annotated[bool, Form()] = False,
        on_error: Annotated[bool, Form()] = False,
    ) -> Response:
        try:
            notify.add_subscription(engine, job, recipient, on_success, on_error, who.name)
            notice = f"{recipient} is notified of {job}"
        except GimError as error:
            notice = f"not saved: {error}"
        return back(request, "/notifications", notice)

    @app.get("/jobs/{job}/notifications", response_class=HTMLResponse, include_in_schema=False)
    def job_notifications_page(request: Request, who: PageViewer, job: str) -> Response:
        """Alma's "Email notifications" of one job (A3): its subscribers with Send on success
        and Send on error; admins add users (those with an address) or addresses and save."""
        if job not in JOB_NAMES:
            raise HTTPException(404, f"unknown job '{job}'; jobs are {', '.join(JOB_NAMES)}")
        subscriptions = notify.list_subscriptions(engine, job)
        taken = {s["recipient"] for s in subscriptions}
        users = [u for u in auth.list_users(engine) if u["email"] and u["name"] not in taken]
        return page(
            request,
            "job_notifications.html",
            who,
            job=job,
            category=BY_NAME[job].category,
            subscriptions=subscriptions,
            users=users,
        )

    @app.post("/jobs/{job}/notifications", include_in_schema=False)
    async def job_notifications_save(request: Request, who: PageAdmin, job: str) -> Response:
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
                notify.save_job_subscriptions, engine, job, keep, add, who.name
            )
            notice = f"saved: {added} added, {changed} changed, {removed} removed"
        except GimError as error:
            notice = f"not saved: {error}"
        return back(request, target, notice)

    @app.post("/notifications/{subscription_id}/delete", include_in_schema=False)
    def notifications_delete(
        request: Request, who: PageAdmin, subscription_id: SubscriptionId
    ) -> Response:
        try:
            notify.remove_subscription(engine, subscription_id)
            notice = "subscription removed"
        except GimError as error:
            notice = str(error)
        return back(request, "/notifications", notice)
