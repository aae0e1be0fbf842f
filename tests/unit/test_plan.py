"""``gim schedule plan`` and ``gim schedule next``: the ideal timeline and Next Run (S1-S10,
A1), on the seed's sample schedule and across DST."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from gim_tasks.cli.main import main as gim
from gim_tasks.options.values import schedule_from_ini
from gim_tasks.schedule.plan import period, plan

SAMPLE_INI = """\
[schedule]
timezone = Europe/Berlin
etl-start-time = 06:30
etl-end-time = 00:30
etl-frequency = 30
maintain-start-time = 03:00
run-aggregates = true
aggregate-schedule = 0 4
aggregate-duration = 23:00
run-update-stats = false
"""


def events_of(ini: str, start: datetime, days: int) -> list[dict[str, str]]:
    options = schedule_from_ini(ini)
    return [event.as_dict() for event in plan(options, *period(options, start, days))]


def test_sample_schedule_table_over_three_days() -> None:
    events = events_of(SAMPLE_INI, datetime(2026, 11, 23), 3)
    by_day: dict[str, Counter[tuple[str, str]]] = {}
    for event in events:
        by_day.setdefault(event["at"][:10], Counter())[(event["job"], event["event"])] += 1
    for day in ("2026-11-23", "2026-11-24", "2026-11-25"):
        assert by_day[day] == Counter(
            {
                (
                    "Job_ExtractICON",
                    "start",
                ): 37,  # 00:00, 00:30 of the previous span + 06:30..23:30
                ("Job_MaintainGIM", "start"): 1,
                ("Job_AggregateGIM", "start"): 1,
                ("Job_AggregateGIM", "stop"): 1,
            }
        )
    first_day = [e for e in events if e["at"].startswith("2026-11-23")]
    assert [(e["at"][11:16], e["job"], e["event"]) for e in first_day[:6]] == [
        ("00:00", "Job_ExtractICON", "start"),
        ("00:30", "Job_ExtractICON", "start"),
        ("03:00", "Job_AggregateGIM", "stop"),
        ("03:00", "Job_MaintainGIM", "start"),
        ("04:00", "Job_AggregateGIM", "start"),
        ("06:30", "Job_ExtractICON", "start"),
    ]
    assert all(e["at"].endswith("+01:00") for e in events)
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)


def test_plan_across_spring_forward_in_local_offsets() -> None:
    events = events_of(SAMPLE_INI.replace("03:00", "02:30"), datetime(2026, 3, 29), 1)
    maintain = [e for e in events if e["job"] == "Job_MaintainGIM"]
    assert maintain == [
        {"job": "Job_MaintainGIM", "event": "start", "at": "2026-03-29T03:00:00+02:00"}
    ]  # 02:30 does not exist (S10)
    stops = [e["at"] for e in events if e["event"] == "stop"]
    # Opened 04:00 CET the day before; 23:00 of wall time later is 03:00 CEST (22 h elapsed):
    # the hour left for maintenance stays an hour across DST.
    assert stops == ["2026-03-29T03:00:00+02:00"]


def test_run_flags_and_run_scheduler_are_respected() -> None:
    off = events_of(SAMPLE_INI + "run-scheduler = false\n", datetime(2026, 11, 23), 2)
    assert off == []
    no_maintain = events_of(
        SAMPLE_INI.replace("run-aggregates = true", "run-aggregates = false")
        + "run-maintain = false\n",
        datetime(2026, 11, 23),
        1,
    )
    assert {e["job"] for e in no_maintain} == {"Job_ExtractICON"}


def test_touching_windows_merge_into_continuous_aggregation() -> None:
    events = events_of(SAMPLE_INI.replace("23:00", "24:00"), datetime(2026, 11, 23), 3)
    aggregate = [e for e in events if e["job"] == "Job_AggregateGIM"]
    assert aggregate == []  # opened before the period, never closes within it


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "options.ini"
    path.write_text(text)
    return path


def test_cli_plan_json_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, SAMPLE_INI)
    assert (
        gim(
            [
                "schedule",
                "plan",
                "--options-file",
                str(path),
                "--start",
                "2026-11-23T06:00",
                "--days",
                "1",
                "--json",
            ]
        )
        == 0
    )
    events = json.loads(capsys.readouterr().out)
    assert events[0] == {
        "job": "Job_ExtractICON",
        "event": "start",
        "at": "2026-11-23T06:30:00+01:00",
    }
    assert {tuple(sorted(e)) for e in events} == {("at", "event", "job")}


def test_cli_plan_rejects_bad_options_and_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, "[schedule]\netl-frequency = -5\n")
    assert gim(["schedule", "plan", "--options-file", str(bad), "--start", "2026-11-23"]) == 2
    assert "[schedule] etl-frequency = '-5' is invalid" in capsys.readouterr().err
    good = write(tmp_path, SAMPLE_INI)
    assert gim(["schedule", "plan", "--options-file", str(good), "--start", "23.11.2026"]) == 1
    assert "is not YYYY-MM-DD" in capsys.readouterr().err


def test_cli_next_gives_schedule_in_words_and_next_run_in_zone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, SAMPLE_INI + "run-export = true\n")
    assert (
        gim(
            [
                "schedule",
                "next",
                "--options-file",
                str(path),
                "--now",
                "2026-11-23T01:00+01:00",
                "--json",
            ]
        )
        == 0
    )
    rows = {row["job"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["Job_ExtractICON"] == {
        "job": "Job_ExtractICON",
        "active": True,
        "schedule": "every 30 min from 06:30 to 00:30, Europe/Berlin",
        "next_run": "2026-11-23T06:30:00+01:00",
    }
    assert rows["Job_MaintainGIM"]["next_run"] == "2026-11-23T03:00:00+01:00"
    assert rows["Job_ExportGIM"]["schedule"] == "daily at 00:20, 08:20, 16:20, Europe/Berlin"
    assert rows["Job_UpdateStats"] == {
        "job": "Job_UpdateStats",
        "active": False,
        "schedule": "every 10 min, Europe/Berlin",
        "next_run": None,
    }
    assert gim(["schedule", "next", "--options-file", str(path), "--now", "2026-11-23T01:00"]) == 1
    assert "has no UTC offset" in capsys.readouterr().err


def test_s1_final_cycle_at_end_time_plan_next_run_and_words_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """S1: every 25 min from 06:30, the grid reaches 00:25; the final cycle still begins at
    00:30. The plan, Next Run and the schedule in words say the same."""
    path = write(tmp_path, SAMPLE_INI.replace("etl-frequency = 30", "etl-frequency = 25"))
    args = ["schedule", "plan", "--options-file", str(path), "--start", "2026-11-23T06:00"]
    assert gim([*args, "--days", "1", "--json"]) == 0
    starts = [
        e["at"][11:16]
        for e in json.loads(capsys.readouterr().out)
        if (e["job"], e["event"]) == ("Job_ExtractICON", "start")
    ]
    assert starts[0] == "06:30" and starts[-3:] == ["00:00", "00:25", "00:30"]
    assert len(starts) == 1080 // 25 + 2
    next_args = ["schedule", "next", "--options-file", str(path), "--json"]
    assert gim([*next_args, "--now", "2026-11-24T00:26+01:00"]) == 0
    (extract,) = [r for r in json.loads(capsys.readouterr().out) if r["job"] == "Job_ExtractICON"]
    assert extract["next_run"] == "2026-11-24T00:30:00+01:00"
    assert extract["schedule"] == (
        "every 25 min from 06:30 to 00:30 (the final cycle 5 min after the one before), "
        "Europe/Berlin"
    )
