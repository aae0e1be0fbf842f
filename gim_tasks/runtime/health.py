"""The configuration check with its server-side items (SPEC C1): options, schema, Info Mart,
every IDB, Redis, and the export output directory. ``gim config check`` prints it; the beat and
every manual start run it (C2)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gim_tasks.options.check import CheckReport, Finding, Level, check_options
from gim_tasks.options.values import Options
from gim_tasks.settings import Settings
from gim_tasks.status import Check, run_checks

ROOT = Path(__file__).resolve().parents[2]


def output_directory(options: Options, settings: Settings) -> Path:
    """The export folder: the option, resolved under GIM_OUTPUT_DIRECTORY when relative."""
    configured = Path(options.get("gim-export", "output-directory"))
    return configured if configured.is_absolute() else settings.output_directory / configured


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


def check_deployment(options: Options, settings: Settings) -> CheckReport:
    """The whole configuration check (C1)."""
    report = check_options(options)
    for check in run_checks(settings):
        report = report.merged(_finding(check))
    problem = check_output_directory(output_directory(options, settings))
    if problem is not None:
        level: Level = "error" if options.get("schedule", "run-export") else "warning"
        report = report.merged([Finding(level, "[gim-export] output-directory", problem)])
    return report
