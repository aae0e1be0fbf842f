"""``gim firings``, ``gim alerts``, ``gim watchdog``, ``gim webhook``: did it run? (SPEC O1-O3)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from gim_tasks.cli.common import ActorOption, JsonFlag, current_actor, mart_engine, out, settings

webhook_app = typer.Typer(
    rich_markup_mode=None,
    help="Webhooks that receive incident messages (JSON POST with a Slack-style `text`).",
    no_args_is_help=True,
)

VERDICT_HELP = "on-time, late, held, skipped, blocked, missed, or pending (not decided yet)."
WHEN_HELP = "YYYY-MM-DD or YYYY-MM-DDTHH:MM in the schedule's time zone, or an ISO instant."


def firings_command(
    job: Annotated[str | None, typer.Option(help="Only this job.")] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="From this instant: " + WHEN_HELP)
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Before this instant: " + WHEN_HELP)
    ] = None,
    verdict: Annotated[str | None, typer.Option(help=VERDICT_HELP)] = None,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 500,
    as_json: JsonFlag = False,
) -> None:
    """The firing ledger (O1): every planned firing with its verdict, lag, reason and run,
    oldest first. Without --from: from 24 hours ago."""
    from rich.markup import escape
    from rich.table import Table

    from gim_tasks.monitor import ledger
    from gim_tasks.options import store

    engine = mart_engine()
    with engine.connect() as conn:
        tz_name = store.load_options(conn).schedule().timezone
        query = ledger.firing_query(job, start, end, verdict, limit, tz_name)
        rows = ledger.query(conn, query)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("planned", "job", "stream", "verdict", "lag s", "run", "reason", box=None)
    for row in rows:
        table.add_row(
            ledger.local_text(row["planned_at"], tz_name),
            row["job"],
            row["stream"],
            row["verdict"] or "pending",
            "" if row["lag_seconds"] is None else f"{row['lag_seconds']:.1f}",
            str(row["run_id"] or ""),
            escape(row["reason"] or ""),
        )
    out.print(table)


def alerts_command(
    open_only: Annotated[bool, typer.Option("--open", help="Only open incidents.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Incidents (O3), open ones first: condition, job, detail, opened, resolved, deliveries."""
    from rich.markup import escape
    from rich.table import Table

    from gim_tasks.monitor import alerts

    with mart_engine().connect() as conn:
        rows = alerts.list_incidents(conn, open_only, limit)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("id", "condition", "job", "opened", "resolved", "n", "sent", "detail", box=None)
    for row in rows:
        sent = sum(1 for d in row["deliveries"] if d["state"] == "sent")
        table.add_row(
            str(row["incident"]),
            row["condition"],
            row["job"] or "(scheduler)",
            row["opened_at"][:19],
            (row["resolved_at"] or "open")[:19],
            str(row["occurrences"]),
            f"{sent}/{len(row['deliveries'])}",
            escape(row["detail"]),
        )
    out.print(table)


def watchdog_command(
    interval: Annotated[float, typer.Option(min=1, max=300, help="Seconds between passes.")] = 15,
    once: Annotated[bool, typer.Option("--once", help="One pass, print it, exit.")] = False,
) -> None:
    """Watch the scheduler from outside the beat (O2) where no web app runs (the web app runs
    the same watchdog): missed firings, a silent beat, failing jobs, stale data; send the
    incidents' mails and webhooks. Several may run: one pass at a time does the work."""
    import logging

    import redis

    from gim_tasks.monitor import watchdog

    if once:
        result = watchdog.check(
            mart_engine(), redis.Redis.from_url(settings().redis_url), settings()
        )
        print(json.dumps(result.__dict__, indent=2))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        watchdog.run_forever(mart_engine(), settings(), interval)
    except KeyboardInterrupt:
        pass


@webhook_app.command("add")
def webhook_add(
    url: Annotated[str, typer.Argument(help="http:// or https:// URL of the receiver.")],
    events: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated conditions to send (failure, blocked, missed, late, "
            "stale-data, scheduler-down); default: all."
        ),
    ] = None,
    actor: ActorOption = "",
) -> None:
    """Send incident messages (opened and resolved) to URL."""
    from gim_tasks.monitor import alerts

    hook = alerts.add_webhook(
        mart_engine(), url, alerts.parse_events(events), actor or current_actor()
    )
    out.print(f"webhook {hook}: {url} ({events or 'all conditions'})", markup=False)


@webhook_app.command("remove")
def webhook_remove(hook_id: Annotated[int, typer.Argument(help="Webhook id.")]) -> None:
    """Stop sending to a webhook."""
    from gim_tasks.monitor import alerts

    alerts.remove_webhook(mart_engine(), hook_id)
    out.print(f"webhook {hook_id} removed", markup=False)


@webhook_app.command("list")
def webhook_list(as_json: JsonFlag = False) -> None:
    """Webhooks: id, URL, conditions, who added them."""
    from rich.table import Table

    from gim_tasks.monitor import alerts

    rows = alerts.list_webhooks(mart_engine())
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("id", "url", "events", "by", box=None)
    for row in rows:
        events = row["events"]
        table.add_row(
            str(row["id"]),
            row["url"],
            events if isinstance(events, str) else ",".join(events),
            row["created_by"],
        )
    out.print(table)
