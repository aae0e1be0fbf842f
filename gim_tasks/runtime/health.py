"""The configuration check with its server-side items (SPEC C1): options, schema, Info Mart,
every IDB, Redis, and the export output directory. ``gim config check`` prints it; the beat and
every manual start run it (C2)."""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gim_tasks.db.engine import make_engine
from gim_tasks.errors import GimError
from gim_tasks.options.check import CheckReport, Finding, Level, check_options
from gim_tasks.options.paths import resolve_output_directory
from gim_tasks.options.values import Options
from gim_tasks.schedule.jobs import EXPORT, MAINTAIN
from gim_tasks.settings import Settings
from gim_tasks.status import Check, run_checks

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("gim_tasks.runtime.health")
#: C2: the beat re-checks the server items at most this often (seconds).
SERVER_CHECK_SECONDS = float(os.environ.get("GIM_SERVER_CHECK_SECONDS", "30"))


def output_directory(options: Options, settings: Settings) -> Path:
    """The export folder: the option, resolved under GIM_OUTPUT_DIRECTORY when relative."""
    return resolve_output_directory(options, settings.output_directory)


def check_output_directory(options: Options, settings: Settings) -> str | None:
    """Why the export folder cannot take export files, or None when it can. Nothing is
    created (a viewer reading the options must not make directories on the host): the folder,
    or its nearest existing parent, must be a writable directory. The message is the same
    whether or not the path exists."""
    try:
        resolved = output_directory(options, settings)
    except GimError as error:
        return str(error)
    package = (ROOT / "gim_tasks").resolve()
    if resolved == package or package in resolved.parents:
        return f"{resolved} is inside the code tree"
    existing = resolved
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return f"{resolved} cannot be created or written by this process"
    return None


def _finding(check: Check) -> list[Finding]:
    findings = []
    if not check.ok:
        findings.append(Finding("error", check.item, f"{check.target}: {check.detail}"))
    if check.warning:
        findings.append(Finding("warning", check.item, check.warning))
    return findings


def _mart_value(settings: Settings, query: str) -> Any:
    """One value from the Info Mart, on a connection of its own (the check runs rarely)."""
    engine = make_engine(settings.database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query)).scalar_one_or_none()
    finally:
        engine.dispose()


def check_retention(
    options: Options, settings: Settings, now: datetime | None = None
) -> list[Finding]:
    """Retention must not purge facts that export has not consumed yet (issue 7)."""
    if not options.get("schedule", "run-export"):
        return []
    now = now or datetime.now(UTC)
    keep = int(options.get("gim-etl", "days-to-keep-facts"))
    try:
        through = _mart_value(settings, "SELECT exported_through FROM export_mark WHERE id = 1")
    except sa.exc.SQLAlchemyError:
        return []  # the reachability checks report the database
    oldest_kept = now - timedelta(days=keep)
    if through is not None and through < oldest_kept:
        return [
            Finding(
                "warning",
                "[gim-etl] days-to-keep-facts",
                f"export has reached {through:%Y-%m-%d %H:%M %Z} only; facts before "
                f"{oldest_kept:%Y-%m-%d} are purged before {EXPORT} exports them",
            )
        ]
    return []


def check_calendar(
    options: Options, settings: Settings, now: datetime | None = None
) -> list[Finding]:
    """C1/C2: the DATE_TIME calendar and every custom calendar (``[gim-etl]
    date-time-extra-time-zones``, table ``date_time_extra``) must reach
    ``date-time-min-days-ahead`` days past today. Job_MaintainGIM fills them, so this error
    does not block maintenance."""
    now = now or datetime.now(UTC)
    days = int(options.get("gim-etl", "date-time-min-days-ahead"))
    needed = now + timedelta(days=days)
    extra = list(options.get("gim-etl", "date-time-extra-time-zones"))
    # One statement on one connection: the reach of DATE_TIME and of each custom calendar.
    query = (
        "SELECT jsonb_build_object('', (SELECT max(date_time_key) FROM date_time)) || "
        "coalesce((SELECT jsonb_object_agg(calendar, "
        "reach) FROM (SELECT calendar, max(date_time_key) AS reach FROM date_time_extra "
        "GROUP BY calendar) AS c), '{}')"
    )
    try:
        reaches = _mart_value(settings, query) or {}
    except sa.exc.SQLAlchemyError:
        return []  # the reachability and schema checks report the database
    findings = []
    for name in ["", *extra]:
        newest = reaches.get(name)
        if newest is not None and datetime.fromtimestamp(newest, UTC) >= needed:
            continue
        what = f"the custom calendar {name}" if name else "the DATE_TIME calendar"
        reach = (
            f"reaches {datetime.fromtimestamp(newest, UTC):%Y-%m-%d} only"
            if newest is not None
            else "is empty"
        )
        findings.append(
            Finding(
                "error",
                "[gim-etl] date-time-min-days-ahead",
                f"{what} {reach}; it must reach {days} days ahead ({needed:%Y-%m-%d}): run "
                f"{MAINTAIN} (`gim run {MAINTAIN}`), which fills it up to "
                "date-time-max-days-ahead",
                spares=(MAINTAIN,),
            )
        )
    return findings


def server_findings(
    options: Options, settings: Settings, now: datetime | None = None
) -> list[Finding]:
    """The items of the check that need servers (C1): Info Mart, schema, every IDB, Redis,
    calendar, export directory. A down server is a finding, never an exception."""
    findings: list[Finding] = []
    checks = run_checks(settings)
    for check in checks:
        findings.extend(_finding(check))
    if all(check.ok for check in checks if check.item in ("Info Mart", "schema")):
        findings.extend(check_calendar(options, settings, now))
        findings.extend(check_retention(options, settings, now))
    problem = check_output_directory(options, settings)
    if problem is not None:
        level: Level = "error" if options.get("schedule", "run-export") else "warning"
        findings.append(Finding(level, "[gim-export] output-directory", problem))
    return findings


def check_deployment(options: Options, settings: Settings) -> CheckReport:
    """The whole configuration check (C1); every error in it blocks new runs (C2)."""
    return check_options(options).merged(server_findings(options, settings))


class CachedServerCheck:
    """The beat's view of the server items (C2): refreshed at most every ``max_age`` seconds
    in a background thread, so a tick never waits for a slow or unreachable server; the first
    call waits for the first result. Option rules are pure and checked on every tick."""

    def __init__(self, settings: Settings, max_age: float = SERVER_CHECK_SECONDS) -> None:
        self.settings, self.max_age = settings, max_age
        self._findings: list[Finding] | None = None
        self._checked_at = 0.0
        self._refreshing: threading.Thread | None = None
        self.refreshes = 0

    def _refresh(self, options: Options) -> None:
        try:
            findings = server_findings(options, self.settings)
        except Exception as error:  # a check must never kill the beat
            log.exception("configuration check of the servers failed")
            findings = [Finding("error", "configuration check", str(error).splitlines()[0])]
        self._findings, self._checked_at = findings, time.monotonic()
        self.refreshes += 1

    def report(self, options: Options) -> CheckReport:
        if self._findings is None:
            self._refresh(options)
        elif time.monotonic() - self._checked_at >= self.max_age and not (
            self._refreshing is not None and self._refreshing.is_alive()
        ):
            self._checked_at = time.monotonic()  # one refresh at a time
            self._refreshing = threading.Thread(
                target=self._refresh, args=(options,), name="gim-server-check", daemon=True
            )
            self._refreshing.start()
        return check_options(options).merged(self._findings or [])
