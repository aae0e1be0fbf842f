"""The firing ledger's pure parts (SPEC O1): which firings it plans, under which ids, and the
verdict a decision gives. The ids must be the engine's: a launch finds its planned row."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from gim_tasks.monitor import ledger
from gim_tasks.options.values import schedule_from_ini
from gim_tasks.schedule.engine import Hold, Launch, Skip, decide
from gim_tasks.schedule.localtime import resolve, zone
from gim_tasks.schedule.state import SchedulerState

INI = """\
[schedule]
timezone = Europe/Berlin
etl-start-time = 06:30
etl-end-time = 00:30
etl-frequency = 30
run-aggregates = true
aggregate-schedule = 0 4
aggregate-duration = 23:00
run-update-stats = true
update-stats-schedule = 0/10 *
run-export = true
"""
OPTIONS = schedule_from_ini(INI)
TZ = zone("Europe/Berlin")


def local(text: str) -> datetime:
    return resolve(datetime.strptime(text, "%Y-%m-%d %H:%M"), TZ)


def test_o1_a_day_planned_per_stream_with_unique_ids() -> None:
    start = local("2026-11-23 00:00")
    rows = ledger.planned(OPTIONS, start, start + timedelta(days=1))
    assert len({row["firing_id"] for row in rows}) == len(rows)
    assert Counter(row["stream"] for row in rows) == {
        "etl": 37,  # 00:00, 00:30, then 06:30 .. 23:30
        "statistics": 144,
        "maintenance": 1,
        "export": 3,
        "window-open": 1,
        "window-close": 1,
    }
    assert all(row["planned_at"].tzinfo is UTC for row in rows)


def test_o1_fall_back_day_plans_each_wall_time_once() -> None:
    """Europe/Berlin 2026-10-25 has 25 hours; a wall time that occurs twice fires once (S10):
    UpdateStats every 10 minutes is planned 144 times, at distinct instants."""
    start = local("2026-10-25 00:00")
    rows = ledger.planned(OPTIONS, start, local("2026-10-26 00:00"))
    stats = [row for row in rows if row["stream"] == "statistics"]
    assert len(stats) == 144
    assert len({row["planned_at"] for row in stats}) == 144


@pytest.mark.parametrize(
    ("now", "job"),
    [
        ("2026-11-23 06:30", "Job_ExtractICON"),
        ("2026-11-23 03:00", "Job_MaintainGIM"),
        ("2026-11-23 08:20", "Job_ExportGIM"),
        ("2026-11-23 04:00", "Job_AggregateGIM"),
    ],
)
def test_o1_the_engines_launch_carries_the_planned_firing_id(now: str, job: str) -> None:
    instant = local(now)
    planned = {
        row["firing_id"] for row in ledger.planned(OPTIONS, instant, instant + timedelta(hours=1))
    }
    cursors = {name: instant - timedelta(seconds=1) for name in ledger.STREAMS}
    cursors["Job_AggregateGIM"] = instant - timedelta(days=1)
    tick = decide(OPTIONS, instant + timedelta(seconds=1), SchedulerState(cursors=cursors))
    (launch,) = [a for a in tick.actions if isinstance(a, Launch) and a.job == job]
    assert launch.firing_id in planned


def test_o1_verdicts_of_decisions() -> None:
    at = local("2026-11-23 06:30")
    fid = "Job_ExtractICON:x"
    launch = Launch("Job_ExtractICON", fid, at, "scheduled", "ETL cycle (S1)")
    assert ledger.verdict_of(launch, 60.0, 60) == "on-time"
    assert ledger.verdict_of(launch, 60.5, 60) == "late"
    restart = Launch("Job_AggregateGIM", fid, at, "restart", "restarted (S7)")
    assert ledger.verdict_of(restart, 900, 60) is None  # not a planned firing
    transform = Launch("Job_TransformGIM", fid, at, "scheduled", "after Extract (S3)")
    assert ledger.verdict_of(transform, 0, 60) is None
    assert ledger.verdict_of(Hold("Job_ExtractICON", fid, at, "S13"), 0, 60) == "held"
    assert ledger.verdict_of(Skip("Job_ExtractICON", fid, at, "S1"), 0, 60) == "skipped"
    blocked = Skip("Job_ExtractICON", fid, at, "configuration check failed", blocked=True)
    assert ledger.verdict_of(blocked, 0, 60) == "blocked"
    missed = Skip("Job_ExtractICON", fid, at, "missed while down (S12)", missed=True)
    assert ledger.verdict_of(missed, 3600, 60) == "missed"


def test_o1_s12_skip_after_downtime_is_marked_missed_by_the_engine() -> None:
    """A maintenance firing missed while the scheduler was down on an earlier day (S12)."""
    cursors = {name: local("2026-11-22 02:00") for name in ledger.STREAMS}
    tick = decide(OPTIONS, local("2026-11-24 02:00"), SchedulerState(cursors=cursors))
    skips = [a for a in tick.actions if isinstance(a, Skip) and a.job == "Job_MaintainGIM"]
    assert skips and all(skip.missed for skip in skips)


def test_o1_filters_are_checked_with_clear_errors() -> None:
    from gim_tasks.errors import GimError

    with pytest.raises(GimError, match="verdict 'late-ish' is not one of on-time, late"):
        ledger.firing_query(None, None, None, "late-ish", 10, "UTC")
    with pytest.raises(GimError, match="job 'Job_X' is not one of Job_ExtractICON"):
        ledger.firing_query("Job_X", None, None, None, 10, "UTC")
    with pytest.raises(GimError, match="from 'noon' is not a date YYYY-MM-DD"):
        ledger.firing_query(None, "noon", None, None, 10, "UTC")
    with pytest.raises(GimError, match="is not after"):
        ledger.firing_query(None, "2026-11-23", "2026-11-22", None, 10, "UTC")
    query = ledger.firing_query(None, "2026-11-23T06:30", None, "pending", 10, "Europe/Berlin")
    assert query.start == local("2026-11-23 06:30") and query.verdict == "pending"


def test_o4_freshness_option_names_categories_tables_and_levels() -> None:
    from gim_tasks.aggregate.registry import LEVELS
    from gim_tasks.db import mart_tables
    from gim_tasks.options.registry import FRESHNESS_TABLES, OptionError, lookup

    facts = tuple(name for name in mart_tables.metadata.tables if name.endswith("_fact"))
    assert set(FRESHNESS_TABLES) == {*facts, *LEVELS}
    spec = lookup("monitor", "freshness-slo-minutes")
    assert spec.parse("etl=30, Campaign_Attempt_Fact=0, hour=90") == {
        "ETL": 30,
        "campaign_attempt_fact": 0,
        "HOUR": 90,
    }
    for bad, why in (
        ("ETL", "'ETL' does not name a category, fact table or level"),
        ("facts=10", "'facts=10' does not name a category, fact table or level"),
        ("ETL=10, etl=20", "ETL is given twice"),
        ("ETL=-1", "'-1' minutes for ETL is not 0 to 10080"),
    ):
        with pytest.raises(OptionError) as refused:
            spec.parse(bad)
        assert str(refused.value) == (
            f"[monitor] freshness-slo-minutes = '{bad}' is invalid ({why}): allowed is "
            + spec.type.allowed
        )
