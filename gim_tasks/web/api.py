"""The JSON API under ``/api`` (SPEC §7; its contract: :mod:`gim_tasks.web.schemas`).
Registered by :func:`gim_tasks.web.app.create_app`, which owns the security (roles, CSRF,
sessions, headers) and hands these routes what they share in a
:class:`~gim_tasks.web.kit.Kit`."""

import importlib.resources
from datetime import UTC, datetime
from datetime import date as datetime_date
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from gim_tasks.db.tables import RUN_STATES
from gim_tasks.errors import GimError
from gim_tasks.lifecycle import VERDICTS, RunState
from gim_tasks.monitor import alerts, ledger, mart_status, notify
from gim_tasks.options import store
from gim_tasks.options.registry import OptionError
from gim_tasks.runtime import manager
from gim_tasks.web import schemas as sc
from gim_tasks.web import views
from gim_tasks.web.access import Admin, Operator, Viewer
from gim_tasks.web.kit import (
    AUTH,
    MAX_OFFSET,
    ApiError,
    Kit,
    RunId,
    SubscriptionId,
    plain_days,
    text,
)
from gim_tasks.web.schemas import errors, ok
from gim_tasks.web.security import DOCS_CONTENT_SECURITY_POLICY

#: The Swagger UI files /api/docs loads, vendored by the fastapi-offline package (Swagger UI
#: 5, which reads OpenAPI 3.1): served by this app, so the docs work without internet.
#: Every text of a body is stored: PostgreSQL cannot store a NUL byte (app.py's handler).
NUL = "text with a NUL byte, which PostgreSQL cannot store."
DOCS_DIR = Path(str(importlib.resources.files("fastapi_offline") / "static"))
DOCS_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js")


def register(app: FastAPI, kit: Kit) -> None:
    """Add the API's operations to ``app``."""
    engine, settings, templates = kit.engine, kit.settings, kit.templates
    admit, gim_error, known_option = kit.admit, kit.gim_error, kit.known_option
    option_rows = kit.option_rows
    # ----- API -------------------------------------------------------------------------------

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi(who: Viewer) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/api/docs", include_in_schema=False)
    def docs(request: Request, who: Viewer) -> Response:
        """Swagger UI from the vendored files (fastapi-offline): no CDN, so it works
        air-gapped; its one script of our own is /static/swagger-init.js."""
        return templates.TemplateResponse(
            request,
            "api_docs.html",
            {"title": app.title},
            headers={"Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY},
        )

    @app.get("/api/docs/assets/{name}", include_in_schema=False)
    def docs_asset(who: Viewer, name: str) -> Response:
        if name not in DOCS_ASSETS:
            raise ApiError(404, f"no such file; the docs' files are {', '.join(DOCS_ASSETS)}")
        return FileResponse(DOCS_DIR / name)

    @app.get(
        "/api/me", tags=["session"], response_model=None, responses={**ok(sc.Me, "You."), **AUTH}
    )
    def me(who: Viewer) -> dict[str, str]:
        """Who you are and your role."""
        return {"name": who.name, "role": who.role, "via": who.via}

    @app.get(
        "/api/jobs/scheduled",
        tags=["jobs"],
        response_model=None,
        responses={**ok(list[sc.ScheduledJob], "One object per job."), **AUTH, **errors(422)},
    )
    def api_scheduled(
        who: Viewer, category: Annotated[sc.Category | None, Query()] = None
    ) -> list[dict[str, Any]]:
        """The Scheduled tab (A1): one object per job, Next Run in the schedule's zone."""
        return views.scheduled_jobs(engine, datetime.now(UTC), text(category))

    @app.get(
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
            Query(
                description="A local day of the schedule's zone, YYYY-MM-DD (from = to).",
                json_schema_extra={"pattern": sc.DAY_PATTERN},
            ),
        ] = None,
        since: Annotated[
            datetime_date | None,
            Query(
                alias="from",
                description="First local day (included), YYYY-MM-DD.",
                json_schema_extra={"pattern": sc.DAY_PATTERN},
            ),
        ] = None,
        until: Annotated[
            datetime_date | None,
            Query(
                alias="to",
                description="Last local day (included), YYYY-MM-DD.",
                json_schema_extra={"pattern": sc.DAY_PATTERN},
            ),
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
            raise ApiError(
                400, "ended_since needs an ISO instant with its UTC offset (…Z or +01:00)"
            )
        try:
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
        except GimError as error:
            raise gim_error(error) from None
        found = views.page_of_runs(engine, query)
        response.headers["X-Total-Count"] = str(found["total"])
        return list(found["runs"])

    @app.get(
        "/api/runs/{run_id}",
        tags=["runs"],
        response_model=None,
        responses={**ok(sc.RunDetail, "The run."), **AUTH, **errors(404, 422)},
    )
    def api_run(who: Viewer, run_id: RunId) -> dict[str, Any]:
        """One run with its counts, error, discards and notification mails."""
        detail = views.run_detail(engine, run_id)
        if detail is None:
            raise ApiError(404, f"run {run_id} does not exist")
        return detail

    @app.post(
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
    def api_run_job(who: Operator, body: sc.RunRequest) -> JSONResponse:
        """Run a job now (M1): Running, Scheduled (with the reason) or Rejected (with the
        reason; answered 409). Forcing (M7) needs the admin role."""
        try:
            admission = admit(body.job.value, body.params.strip(), body.force, who)
        except GimError as error:
            raise gim_error(error) from None
        reply = {
            "run_id": admission.run_id,
            "state": admission.state,
            "reason": admission.reason,
        }
        if admission.state == RunState.REJECTED:
            return JSONResponse({**reply, "error": admission.reason}, status_code=409)
        return JSONResponse(reply, status_code=201)

    @app.post(
        "/api/runs/{run_id}/stop",
        tags=["runs"],
        response_model=None,
        responses={**ok(sc.Result, "Stop requested."), **AUTH, **errors(404, 409, 422)},
    )
    def api_stop(who: Operator, run_id: RunId) -> dict[str, str]:
        """Stop a Running run (M6): cooperative, then forced after the grace period."""
        try:
            return {"result": manager.stop_run(engine, run_id, who.name)}
        except GimError as error:
            raise gim_error(error) from None

    @app.post(
        "/api/runs/{run_id}/cancel",
        tags=["runs"],
        response_model=None,
        responses={**ok(sc.Result, "Cancelled."), **AUTH, **errors(404, 409, 422)},
    )
    def api_cancel(who: Operator, run_id: RunId) -> dict[str, str]:
        """Cancel a Scheduled run (M6)."""
        try:
            return {"result": manager.cancel_run(engine, run_id, who.name)}
        except GimError as error:
            raise gim_error(error) from None

    @app.get(
        "/api/summary",
        tags=["jobs"],
        response_model=None,
        responses={**ok(sc.Summary, "Per category."), **AUTH, **errors(422)},
    )
    def api_summary(who: Viewer, days: Annotated[int, Query(ge=1, le=366)] = 7) -> dict[str, Any]:
        """Status summary (A4): per category, runs and failures of the last N days."""
        return views.summary(engine, days)

    @app.get(
        "/api/etl/status",
        tags=["status"],
        response_model=None,
        responses={**ok(sc.EtlStatus, "ETL status."), **AUTH},
    )
    def api_etl_status(who: Viewer) -> dict[str, Any]:
        """What `gim etl status --json` shows: per IDB and table extraction marks and rows
        waiting for Transform, segment facts and discards per IDB, lag, fact counts, the last
        Extract and Transform runs."""
        return mart_status.etl_status(engine)

    @app.get(
        "/api/aggregate/status",
        tags=["status"],
        response_model=None,
        responses={**ok(sc.AggregateStatus, "Aggregation status."), **AUTH},
    )
    def api_aggregate_status(who: Viewer) -> dict[str, Any]:
        """What `gim aggregate status --json` shows: pending intervals, queued re-aggregation
        requests, the last batch's duration, recent runs, freshness per hierarchy."""
        return mart_status.aggregate_status(engine)

    @app.get("/metrics", include_in_schema=False)
    def metrics(who: Viewer) -> Response:
        """Prometheus metrics (O5), read from PostgreSQL and Redis on each scrape; any API
        token (viewer) may scrape."""
        from gim_tasks.monitor import metrics

        body = metrics.exposition(engine, kit.redis())
        return Response(body, media_type=metrics.CONTENT_TYPE)

    @app.get(
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
        with engine.connect() as conn:
            tz_name = store.load_options(conn).schedule().timezone
            try:
                query = ledger.firing_query(
                    job.value if job else None, since, until, verdict, limit, tz_name
                )
            except GimError as error:
                raise gim_error(error) from None
            return ledger.query(conn, query)

    @app.get(
        "/api/timeline",
        tags=["monitoring"],
        response_model=None,
        responses={**ok(sc.TimelineReply, "Lanes per job."), **AUTH, **errors(400, 422)},
    )
    def api_timeline(
        who: Viewer,
        request: Request,
        start: Annotated[
            datetime_date | None,
            Query(
                description="First local day, YYYY-MM-DD from 1970 to 2999 (default: today in "
                "the schedule's zone).",
                json_schema_extra={"pattern": sc.DAY_PATTERN},
            ),
        ] = None,
        days: Annotated[int, Query(ge=1, le=7, description="Days: 1 to 7.")] = 1,
    ) -> dict[str, Any]:
        """The Timeline (A7) as data: per job, planned firings (with the ledger's verdict),
        aggregation windows and runs (with state and R4 outcome) of the period."""
        from gim_tasks.monitor import timeline

        plain_days(request, "start")
        now = datetime.now(UTC)
        with engine.connect() as conn:
            options = store.load_options(conn).schedule()
            try:
                drawn = timeline.load(
                    conn, options, start or timeline.today(options, now), days, now
                )
            except ValueError as error:
                raise ApiError(400, str(error)) from None
        return drawn.as_dict()

    @app.post(
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
    def api_schedule_preview(who: Admin, body: sc.SchedulePreview) -> dict[str, Any]:
        """Preview a `[schedule]` change (A7): the planned firings of the period with the given
        values (as `gim schedule plan`) and the configuration check's findings. Nothing is
        stored."""
        from gim_tasks.monitor import timeline
        from gim_tasks.schedule import plan

        now = datetime.now(UTC)
        with engine.connect() as conn:
            current = store.load_options(conn)
        try:
            changed, report = timeline.preview(current, dict(body.values))
        except OptionError as error:
            raise gim_error(GimError(str(error))) from None
        options = changed.schedule()
        start, end = timeline.period(options, body.start or timeline.today(options, now), body.days)
        return {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "events": [event.as_dict() for event in plan.plan(options, start, end)],
            "findings": [finding.as_dict() for finding in report.findings],
        }

    @app.get(
        "/api/alerts",
        tags=["monitoring"],
        response_model=None,
        responses={**ok(list[sc.Incident], "Incidents, open first."), **AUTH, **errors(422)},
    )
    def api_alerts(
        who: Viewer,
        open_only: Annotated[bool, Query(alias="open", description="Only open incidents.")] = False,
        limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    ) -> list[dict[str, Any]]:
        """Incidents (O3) with their mail and webhook deliveries, as `gim alerts --json`."""
        with engine.connect() as conn:
            return alerts.list_incidents(conn, open_only, limit)

    @app.get(
        "/api/options",
        tags=["options"],
        response_model=None,
        responses={**ok(sc.OptionsReply, "Options and findings."), **AUTH},
    )
    def api_options(who: Viewer) -> dict[str, Any]:
        """Every option with its value, and the configuration check's findings."""
        rows, report = option_rows()
        return {"options": rows, "check": [f.as_dict() for f in report.findings]}

    @app.put(
        "/api/options/{section}/{name}",
        tags=["options"],
        response_model=None,
        responses={
            **ok(sc.OptionUpdate, "Stored."),
            **AUTH,
            **errors(
                400,
                404,
                413,
                422,
                unchecked="a value the option does not allow (its `allowed` in GET /api/options; "
                "the document cannot tie a value's form to the name in the path); " + NUL,
            ),
        },
    )
    def api_set_option(
        who: Admin, section: sc.OptionSection, name: sc.OptionName, body: sc.OptionValue
    ) -> dict[str, Any]:
        """Set one option (admin). An invalid value is refused (400, naming what is allowed)
        and nothing is stored; a name the section does not have is a 404."""
        section_text, name_text = known_option(section, name)
        try:
            update = store.set_option(
                engine, section_text, name_text, body.value, who.name, settings.output_directory
            )
        except (GimError, OptionError) as error:
            raise gim_error(GimError(str(error))) from None
        return {"option": f"[{section}] {name}", "old": update.old, "new": update.new}

    @app.delete(
        "/api/options/{section}/{name}",
        tags=["options"],
        response_model=None,
        responses={**ok(sc.OptionUpdate, "Back to its default."), **AUTH, **errors(404, 422)},
    )
    def api_unset_option(
        who: Admin, section: sc.OptionSection, name: sc.OptionName
    ) -> dict[str, Any]:
        """Return one option to its default (admin)."""
        section_text, name_text = known_option(section, name)
        try:
            update = store.unset_option(engine, section_text, name_text, who.name)
        except (GimError, OptionError) as error:
            raise gim_error(GimError(str(error))) from None
        return {"option": f"[{section}] {name}", "old": update.old, "new": update.new}

    @app.get(
        "/api/notifications",
        tags=["notifications"],
        response_model=None,
        responses={**ok(list[sc.SubscriptionRow], "Subscriptions."), **AUTH},
    )
    def api_subscriptions(who: Viewer) -> list[dict[str, Any]]:
        """Notification subscriptions (A3)."""
        return [
            {**row, "created_at": row["created_at"].isoformat()}
            for row in notify.list_subscriptions(engine)
        ]

    @app.post(
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
    def api_subscribe(who: Admin, body: sc.Subscription) -> dict[str, Any]:
        """Subscribe a user or an address to a job's successes and/or errors (admin)."""
        try:
            sid = notify.add_subscription(
                engine, body.job.value, body.recipient, body.on_success, body.on_error, who.name
            )
        except GimError as error:
            raise gim_error(error) from None
        return {"id": sid}

    @app.delete(
        "/api/notifications/{subscription_id}",
        tags=["notifications"],
        response_model=None,
        responses={**ok(sc.Result, "Removed."), **AUTH, **errors(404, 422)},
    )
    def api_unsubscribe(who: Admin, subscription_id: SubscriptionId) -> dict[str, str]:
        """Remove a subscription (admin)."""
        try:
            notify.remove_subscription(engine, subscription_id)
        except GimError as error:
            raise gim_error(error) from None
        return {"result": f"subscription {subscription_id} removed"}
