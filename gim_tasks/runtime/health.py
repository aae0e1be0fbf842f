"""The configuration check with its server-side items (SPEC C1): options, schema, Info Mart,
every IDB, Redis, and the export output directory. ``gim config check`` prints it; the beat and
every manual start run it (C2)."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from gim_tasks.db.engine import make_engine
from gim_tasks.jobs.export import resolve_output_directory
from gim_tasks.options.check import CheckReport, Finding, Level, check_options
from gim_tasks.options.values import Options
from gim_tasks.settings import Settings
from gim_tasks.status import Check, run_checks

ROOT = Path(__file__).resolve().parents[2]


def output_directory(options: Options, settings: Settings) -> Path:
    """The export folder: the option, resolved under GIM_OUTPUT_DIRECTORY when relative."""
    return resolve_output_directory(options, settings.output_directory)


def check_output_directory(path: Path) -> str | None:
    """Why ``path`` cannot take export files, or None when it can (created if missing)."""
    resolved = path.resolve()
    package = (ROOT / "gim_tasks").resolve()
    if resolved == package or package in resolved.parents:
        return f"{resolved} is inside the code tree"
    try:
        resolved.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=resolved, prefix=".gim-check-"):
            pass
    except OSError as error:
        return f"{resolved} is not writable: {error.strerror or error}"
    if not os.access(resolved, os.W_OK | os.X_OK):  # pragma: no cover - caught above
        return f"{resolved} is not writable"
    return None


def _finding(check: Check) -> list[Finding]:
    findings = []
    if not check.ok:
        findings.append(Finding("error", check.item, f"{check.target}: {check.detail}"))
    if check.warning:
        findings.append(Finding("warning", check.item, check.warning))
    return findings


def check_retention(
    options: Options, settings: Settings, now: datetime | None = None
) -> list[Finding]:
    """Retention must not purge facts that export has not consumed yet (issue 7)."""
    if not options.get("schedule", "run-export"):
        return []
    now = now or datetime.now(UTC)
    keep = int(options.get("gim-etl", "days-to-keep-facts"))
    engine = make_engine(settings.database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            through = conn.execute(
                sa.text("SELECT exported_through FROM export_mark WHERE id = 1")
            ).scalar_one_or_none()
    except sa.exc.SQLAlchemyError:
        return []  # the reachability checks report the database
    finally:
        engine.dispose()
    oldest_kept = now - timedelta(days=keep)
    if through is not None and through < oldest_kept:
        return [
            Finding(
                "warning",
                "[gim-etl] days-to-keep-facts",
                f"export has reached {through:%Y-%m-%d %H:%M %Z} only; facts before "
                f"{oldest_kept:%Y-%m-%d} are purged before Job_ExportGIM exports them",
            )
        ]
    return []


def check_deployment(options: Options, settings: Settings) -> CheckReport:
    """The whole configuration check (C1)."""
    report = check_options(options)
    checks = run_checks(settings)
    for check in checks:
        report = report.merged(_finding(check))
    if all(check.ok for check in checks if check.item in ("Info Mart", "schema")):
        report = report.merged(check_retention(options, settings))
    problem = check_output_directory(output_directory(options, settings))
    if problem is not None:
        level: Level = "error" if options.get("schedule", "run-export") else "warning"
        report = report.merged([Finding(level, "[gim-export] output-directory", problem)])
    return report
