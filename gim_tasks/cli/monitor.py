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


alerts_app = typer.Typer(
    rich_markup_mode=None,
    help="Incidents (O3), open ones first; `gim alerts ack ID` acknowledges one (P7).",
    invoke_without_command=True,
)


@alerts_app.callback()
def alerts_command(
    ctx: typer.Context,
    open_only: Annotated[bool, typer.Option("--open", help="Only open incidents.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Incidents (O3), open ones first: condition, job, detail, opened, resolved, deliveries,
    who acknowledged it. `gim alerts ack ID` acknowledges one (P7)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.markup import escape
    from rich.table import Table

    from gim_tasks.monitor import alerts

    with mart_engine().connect() as conn:
        rows = alerts.list_incidents(conn, open_only, limit)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(
        "id", "condition", "job", "opened", "resolved", "n", "sent", "ack", "detail", box=None
    )
    for row in rows:
        sent = sum(1 for d in row["deliveries"] if d["state"] == "sent")
        noted = "".join(f"\n  note {n['actor']}: {n['text']}" for n in row["notes"])
        table.add_row(
            str(row["incident"]),
            row["condition"],
            row["job"] or "(scheduler)",
            row["opened_at"][:19],
            (row["resolved_at"] or "open")[:19],
            str(row["occurrences"]),
            f"{sent}/{len(row['deliveries'])}",
            row["acknowledged_by"] or "-",
            escape(row["detail"] + noted),
        )
    out.print(table)


@alerts_app.command("ack")
def alerts_ack(
    incident: Annotated[int, typer.Argument(min=1, help="The incident's id (gim alerts).")],
    note: Annotated[str | None, typer.Option(help="A note added with the acknowledgement.")] = None,
    actor: ActorOption = "",
) -> None:
    """Acknowledge an open incident (P7): records who and when; its repeat notices stop (a
    failing job's error letters) until it resolves, which stays automatic."""
    from gim_tasks.monitor import notes

    out.print(
        notes.acknowledge(mart_engine(), incident, actor or current_actor(), note), markup=False
    )


NOTE_KINDS = ("run", "firing", "incident")


def note_command(
    kind: Annotated[str, typer.Argument(help="What the note is on: run, firing or incident.")],
    target: Annotated[str, typer.Argument(help="The run id, firing id or incident id.")],
    text: Annotated[str, typer.Argument(help="The note (1 to 2000 characters).")],
    actor: ActorOption = "",
) -> None:
    """Add a note to a run, a firing or an incident (P7): shown in History, the Timeline's
    hover, the run page, the Alerts page and the incident's mails that follow."""
    from gim_tasks.monitor import notes

    if kind not in NOTE_KINDS:
        raise typer.BadParameter(
            f"'{kind}' is not one of {', '.join(NOTE_KINDS)}", param_hint="KIND"
        )
    note_id = notes.add_note(mart_engine(), kind, target, text, actor or current_actor())
    out.print(f"note {note_id} added to {kind} {target}", markup=False)


def audit_command(
    actor: Annotated[str | None, typer.Option(help="Only this actor's actions.")] = None,
    action: Annotated[
        str | None, typer.Option(help="Only this action (run, stop, pause, option-set, ...).")
    ] = None,
    target: Annotated[str | None, typer.Option(help="Only actions on this target.")] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="From this ISO instant (with its offset).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Before this ISO instant (with its offset).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 100,
    as_json: JsonFlag = False,
) -> None:
    """The audit trail (P6), newest first: every mutating action of every channel (web, api,
    cli, celery, beat) with its actor, role, target, reason, before and after."""
    from rich.markup import escape
    from rich.table import Table

    from gim_tasks.errors import GimError, aware_instant
    from gim_tasks.monitor import audit
    from gim_tasks.runtime.holds import checked_instant

    if action and action not in audit.ACTIONS:
        raise GimError(f"unknown action '{action}'; actions are {', '.join(audit.ACTIONS)}")
    where = audit.Filter(
        actor=actor,
        action=action,
        target=target,
        since=checked_instant(aware_instant(start, "--from"), "--from") if start else None,
        until=checked_instant(aware_instant(end, "--to"), "--to") if end else None,
    )
    with mart_engine().connect() as conn:
        rows = audit.listing(conn, where, limit)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    table = Table("at", "actor", "role", "channel", "action", "target", "change", box=None)
    for row in rows:
        change = " ".join(
            f"{label} {json.dumps(row[label], default=str)}"
            for label in ("before", "after")
            if row[label]
        )
        if row["reason"]:
            change = f"({row['reason']}) {change}"
        table.add_row(
            f"{row['at']:%Y-%m-%d %H:%M:%S}",
            row["actor"],
            row["role"],
            row["channel"],
            row["action"],
            escape(row["target"]),
            escape(change),
        )
    out.print(table)


def days_command(
    count: Annotated[
        int, typer.Option("--days", min=1, max=366, help="How many local days, newest first.")
    ] = 14,
    as_json: JsonFlag = False,
) -> None:
    """Is yesterday complete? (Q1, Q2): per local day, each live-fed fact table, the
    aggregation and the export: complete, pending, purged or n/a, from the mart's marks; the
    day's ready-by deadline. Exit code 0 (a report, not a check)."""
    from rich.table import Table

    from gim_tasks.monitor import days

    found = days.listing(mart_engine(), count)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("day", "complete", *found["stages"], "due", box=None)
    for day in found["days"]:
        table.add_row(
            day["day"] + ("" if day["hours"] == 24 else f" ({day['hours']:g} h)"),
            "yes" if day["complete"] else "NO",
            *(day["cells"].get(stage, "n/a") for stage in found["stages"]),
            day["deadline"][:16],
        )
    out.print(table)
    out.print(f"zone {found['zone']}; ready-by {found['ready_by']} the next morning")


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

    alerts.remove_webhook(mart_engine(), hook_id, current_actor())
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


DayOption = Annotated[str | None, typer.Option("--day", help="Only this local day, YYYY-MM-DD.")]


def checks_command(
    day: DayOption = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only failing verdicts.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Quality checks (Q3): the newest verdict of each check (discard-ratio, hour-rows,
    aggregate-verify, manifest-rows) on each subject and interval, newest day first; a failing
    `error` verdict no admin overrode holds the export of what it covers. Exit code 0 (a
    report, not a check)."""
    from rich.markup import escape
    from rich.table import Table

    from gim_tasks.errors import local_date
    from gim_tasks.monitor import checks

    with mart_engine().connect() as conn:
        found = checks.listing(conn, local_date(day, "--day") if day else None, failed)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("day", "check", "subject", "from", "verdict", "measured", "bound", box=None)
    for row in found:
        verdict = "passed" if row["passed"] else ("FAILED" if row["holds"] else row["severity"])
        if row["overridden_at"]:
            verdict = f"overridden by {row['overridden_by']}"
        table.add_row(
            row["day"],
            row["check"],
            escape(row["subject"]),
            row["start"][11:16],
            verdict,
            row["measured"],
            row["bound"],
        )
    out.print(table if found else "no verdict yet (the export job judges the checks)")


check_app = typer.Typer(help="Quality checks (Q3): judge them now, override a failing one.")


@check_app.command("override")
def check_override(
    day: Annotated[str, typer.Argument(help="The local data day, YYYY-MM-DD.")],
    check: Annotated[
        str, typer.Argument(help="discard-ratio, hour-rows, aggregate-verify or manifest-rows.")
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit trail).")],
    actor: ActorOption = "",
) -> None:
    """Release the failing verdicts of CHECK on DAY (Q3): the export publishes the chunks they
    held at its next run and `check-failed` resolves unless another check still fails.
    Audited as `check-override` with the reason."""
    from gim_tasks.errors import local_date
    from gim_tasks.monitor import checks

    n = checks.override(
        mart_engine(), local_date(day, "DAY"), check, reason, actor or current_actor()
    )
    out.print(f"{n} failing {check} verdict(s) of {day} overridden", markup=False)


@check_app.command("run")
def check_run(day: DayOption = None) -> None:
    """Judge the day checks now (discard ratio over the day, one-day aggregate verify) of DAY,
    or of the days that are due (the export job does this at the end of each run)."""
    from datetime import UTC, datetime

    from gim_tasks.errors import local_date
    from gim_tasks.monitor import checks
    from gim_tasks.options import store

    engine = mart_engine()
    with engine.begin() as conn:
        options = store.load_options(conn)
        days = [local_date(day, "--day")] if day else []
        n = checks.run_due(conn, options, datetime.now(UTC), days)
        failing = checks.listing(conn, failed=True, day=days[0] if days else None)
    out.print(f"{n} day(s) judged; {len(failing)} failing verdict(s)", markup=False)
