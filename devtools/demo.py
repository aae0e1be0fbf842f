"""Demo options for ``./dev up``: a schedule that shows every job soon after start.

ETL every minute round the clock except a maintenance gap that opens a few minutes after start,
an aggregation window open now, UpdateStats every 5 minutes, export every 15 minutes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gim_tasks.schedule.localtime import wall, zone

DEMO_TIMEZONE = "Europe/Berlin"


def demo_options(now: datetime) -> str:
    """INI text for a demo schedule relative to the aware instant ``now``."""
    local = wall(now, zone(DEMO_TIMEZONE))
    maintain = local + timedelta(minutes=4)
    etl_start = maintain + timedelta(minutes=6)  # the gap: maintenance has 6 minutes alone
    etl_end = maintain - timedelta(minutes=1)
    opened = local - timedelta(minutes=1)
    return f"""\
[schedule]
timezone = {DEMO_TIMEZONE}
run-scheduler = true
etl-start-time = {etl_start:%H:%M}
etl-end-time = {etl_end:%H:%M}
etl-frequency = 1
run-update-stats = true
update-stats-schedule = 0/5 *
run-aggregates = true
aggregate-schedule = {opened.minute} {opened.hour}
aggregate-duration = 23:50
run-maintain = true
maintain-start-time = {maintain:%H:%M}
run-export = true
export-schedule = 0/15 *

[gim-export]
chunk-size-seconds = 900
"""
