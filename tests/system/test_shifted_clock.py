"""No test depends on today's date (issues 24, 32): the tests marked ``date_sensitive`` (a
unit test keeps that set complete: every test that reads the calendar date) run again under
libfaketime (``LD_PRELOAD``), twice: six weeks ahead, and starting half a minute before the next
spring-forward of Europe/Berlin, so the run crosses it. Every process the inner run starts
inherits the shifted clock, the PostgreSQL server included; Redis is started outside it (its
daemonize hangs under libfaketime) and keeps the real clock, which nothing of ours reads
(``tests/integration/test_server_clocks.py`` checks both).

The inner pytest collects first, unshifted, to know how many tests there are; each shifted
run must report exactly that many passed, none skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Six weeks ahead: past the export test's 14-day output retention and a month boundary.
AHEAD = "+45d"
INNER_TIMEOUT = 600  # the shifted runs (at once); the test's own timeout adds the collection


def next_spring_forward(after: datetime, zone: str = "Europe/Berlin") -> datetime:
    """The first instant after ``after`` at which ``zone``'s offset from UTC grows (UTC)."""
    tz = ZoneInfo(zone)
    hour = after.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    for _ in range(24 * 400):
        following = hour + timedelta(hours=1)
        if following.astimezone(tz).utcoffset() > hour.astimezone(tz).utcoffset():  # type: ignore[operator]
            return following
        hour = following
    raise AssertionError(f"no spring-forward of {zone} within 400 days of {after}")


def _pytest(
    *args: str, env: dict[str, str], prefix: tuple[str, ...] = (), timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_spring_forward_is_found() -> None:
    assert next_spring_forward(datetime(2026, 12, 4, tzinfo=UTC)) == datetime(
        2027, 3, 28, 1, 0, tzinfo=UTC
    )
    assert next_spring_forward(datetime(2027, 3, 28, 1, 0, tzinfo=UTC)) == datetime(
        2028, 3, 26, 1, 0, tzinfo=UTC
    )


@pytest.mark.timeout(INNER_TIMEOUT + 120)
def test_date_sensitive_tests_pass_with_the_clock_shifted() -> None:
    faketime = shutil.which("faketime")
    if faketime is None:
        if os.environ.get("CI"):
            pytest.fail("faketime is missing in CI (./dev setup installs it)")
        pytest.skip("faketime is not installed (apt-get install faketime)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["TZ"] = "UTC"  # libfaketime reads an absolute start in the local zone
    selection = ("-m", "date_sensitive", "tests/integration", "tests/system")
    collected = _pytest("--collect-only", *selection, env=env)
    match = re.search(r"(\d+)/\d+ tests? collected", collected.stdout)
    assert match, collected.stdout[-2000:]
    expected = int(match.group(1))
    assert expected >= 15, collected.stdout[-2000:]
    jump = next_spring_forward(datetime.now(UTC))
    shifts = (
        (AHEAD, datetime.now(UTC) + timedelta(days=44)),
        (f"@{jump - timedelta(seconds=30):%Y-%m-%d %H:%M:%S}", jump - timedelta(seconds=31)),
    )
    for shift, at_least in shifts:
        probe = subprocess.run(
            [faketime, "-f", shift, sys.executable, "-c", "import time; print(time.time())"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        assert float(probe.stdout) > at_least.timestamp(), (shift, probe.stdout)  # shifted
    # Both shifted runs at once, each on its own servers (free ports, own directories).
    # Monotonic clocks shift too (a constant offset: durations stay true); keeping them real
    # (FAKETIME_DONT_FAKE_MONOTONIC) makes libfaketime's nanosleep fail with EINVAL.
    with ThreadPoolExecutor(len(shifts)) as pool:
        runs = list(
            pool.map(
                lambda shift: _pytest(
                    *selection, env=env, prefix=(faketime, "-f", shift), timeout=INNER_TIMEOUT
                ),
                [shift for shift, _ in shifts],
            )
        )
    for (shift, _), run in zip(shifts, runs, strict=True):
        tail = f"clock {shift}:\n" + run.stdout[-4000:] + run.stderr[-2000:]
        assert run.returncode == 0, tail
        summary = re.search(r"(\d+) passed", run.stdout)
        assert summary and int(summary.group(1)) == expected, tail
        assert "skipped" not in run.stdout.splitlines()[-1], tail
