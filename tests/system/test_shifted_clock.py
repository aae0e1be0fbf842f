"""No test depends on today's date (issue 24): the tests that read the real clock (data and
retention relative to now, runs admitted now, maintenance of today's partitions) run again with
every clock of every process a month and a half ahead, under libfaketime (``LD_PRELOAD``, so the
PostgreSQL and Redis servers the inner run starts see the same shifted time), and must pass with
the same number of tests, none skipped.

The inner pytest collects first, unshifted, to know how many tests there are; the shifted run
must report exactly that many passed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Six weeks ahead: past the export test's 14-day output retention and a month boundary.
SHIFT = "+45d"
#: Tests that read the real clock with data or retention relative to it, or that once had a
#: fixed date (the export SIGKILL test's data day outlived its 14-day retention). Chosen to
#: stay within ~45 s: the D5 path tests and the transient-fault export test also read the clock
#: but start `gim` subprocesses (3 s each under libfaketime).
DATE_SENSITIVE = (
    "tests/integration/test_export.py::test_d4_sigkill_during_export_then_rerun_exports_every_interval_once",
    "tests/integration/test_export.py::test_retention_removes_old_chunks_and_partial_leftovers",
    "tests/integration/test_export.py::test_d4_complete_chunks_once_each_and_incremental",
    "tests/integration/test_maintain.py",
    "tests/integration/test_admission_paths.py::test_d5_a_request_queued_before_the_purge_is_refused_when_taken",
    "tests/integration/test_web_api.py::test_a4_summary_counts_runs_and_failures_per_category",
)


def _pytest(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_date_sensitive_tests_pass_with_the_clock_shifted() -> None:
    faketime = shutil.which("faketime")
    if faketime is None:
        if os.environ.get("CI"):
            pytest.fail("faketime is missing in CI (./dev setup installs it)")
        pytest.skip("faketime is not installed (apt-get install faketime)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    collected = _pytest("--collect-only", *DATE_SENSITIVE, env=env)
    match = re.search(r"(\d+) tests? collected", collected.stdout)
    assert match, collected.stdout[-2000:]
    expected = int(match.group(1))
    assert expected >= 8, collected.stdout[-2000:]
    shifted = subprocess.run(
        [faketime, "-f", SHIFT, sys.executable, "-c", "import time; print(time.time())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert float(shifted.stdout) > time.time() + 44 * 86400  # really shifted
    run = subprocess.run(
        [faketime, "-f", SHIFT, sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
        + list(DATE_SENSITIVE),
        cwd=ROOT,
        # Monotonic clocks shift too (a constant offset: durations stay true); keeping them
        # real (FAKETIME_DONT_FAKE_MONOTONIC) makes libfaketime's nanosleep fail with EINVAL.
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = run.stdout[-4000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    summary = re.search(r"(\d+) passed(?:, (\d+) \w+)*", run.stdout)
    assert summary and int(summary.group(1)) == expected, tail
    assert "skipped" not in run.stdout.splitlines()[-1], tail
