"""SPEC Q3's judgements without servers: discard ratio, rows against the same-weekday median,
manifest rows, one-day verify; the ``[quality]`` option types; the grid's ``held`` cell."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from gim_tasks.monitor import checks, days
from gim_tasks.options.types import PercentRange, Severity
from gim_tasks.options.values import Options

DAY = date(2026, 11, 23)
START = datetime(2026, 11, 23, 9, tzinfo=UTC)
END = START + timedelta(hours=1)
SPAN = {"day": DAY, "start": START, "end": END}


def test_q3_discard_ratio_fails_above_its_bound_and_skips_quiet_pairs() -> None:
    found = checks.judge_discards(
        {(1, "f"): (400, 100), (2, "f"): (990, 10), (3, "f"): (5, 5)},
        severity="error",
        max_percent=5,
        min_rows=50,
        **SPAN,
    )
    assert [(r.subject, r.passed, r.measured, r.holds) for r in found] == [
        ("idb 1 f", False, "20.0%", True),
        ("idb 2 f", True, "1.0%", False),
    ]  # IDB 3: 10 source rows, fewer than 50: not judged
    assert "100 of 500 source rows of IDB 1 for f discarded" in found[0].detail
    warned = checks.judge_discards(
        {(1, "f"): (400, 100)}, severity="warn", max_percent=5, min_rows=50, **SPAN
    )
    assert not warned[0].passed and not warned[0].holds  # warn shows, holds nothing
    assert (
        checks.judge_discards(
            {(1, "f"): (400, 100)}, severity="off", max_percent=5, min_rows=50, **SPAN
        )
        == []
    )
    # The bound itself passes.
    edge = checks.judge_discards(
        {(1, "f"): (95, 5)}, severity="error", max_percent=5, min_rows=50, **SPAN
    )
    assert edge[0].passed


def test_q3_hour_rows_against_the_median_of_earlier_same_weekdays() -> None:
    def judge(rows: int, earlier: list[int | None]) -> checks.Result | None:
        return checks.judge_hour(
            "f", rows, earlier, severity="error", bounds=(50, 200), min_rows=50, **SPAN
        )

    low = judge(200, [1000, 900, 1100, None])
    assert low is not None and not low.passed and low.measured == "20%" and low.holds
    assert "median 1000 of the same hour on 3 earlier same weekdays" in low.detail
    ok = judge(800, [1000, 900, 1100, 950])
    assert ok is not None and ok.passed
    assert not judge(2500, [1000, 1000]).passed  # type: ignore[union-attr]  # too many, too
    assert judge(10, [1000, None, None, None]) is None  # one earlier week: not judged
    assert judge(0, [20, 30, 40]) is None  # median below min-rows: a quiet hour


def test_q3_manifest_rows_and_verify_name_what_differs() -> None:
    same = checks.judge_manifest(
        {"a": 3, "b": 4, "c": 1}, {"a": 3, "b": 4}, chunk="x", severity="error", **SPAN
    )
    assert same is not None and same.passed
    differ = checks.judge_manifest({"a": 3}, {"a": 5, "b": 0}, chunk="x", severity="error", **SPAN)
    assert differ is not None and not differ.passed
    assert differ.detail == "a: 3 written, 5 facts" and differ.measured == "1 of 2 files differ"
    lost = checks.judge_verify(
        {"H_QUEUE": [{"table": "agg_h_queue_hour", "missing_or_different": 1, "extra": 0}],
         "H_AGENT": []},
        severity="warn",
        **SPAN,
    )  # fmt: skip
    assert lost is not None and not lost.passed and not lost.holds
    assert lost.detail == "agg_h_queue_hour: 1 missing or different, 0 extra"


def test_q3_same_weekdays_keep_the_local_hour_across_a_dst_change() -> None:
    # Monday 2026-11-02 09:00 in Berlin (CET, UTC+1) is 08:00 UTC; four Mondays before it,
    # 2026-10-05 09:00 was CEST (UTC+2): 07:00 UTC.
    spans = checks.same_weekdays(datetime(2026, 11, 2, 8, tzinfo=UTC), "Europe/Berlin")
    assert [s.isoformat() for s, _ in spans] == [
        "2026-10-26T08:00:00+00:00",
        "2026-10-19T07:00:00+00:00",
        "2026-10-12T07:00:00+00:00",
        "2026-10-05T07:00:00+00:00",
    ]
    assert all(e - s == timedelta(hours=1) for s, e in spans)


@pytest.mark.parametrize("raw", ["error", " WARN ", "off"])
def test_q3_severity_option_takes_its_three_words(raw: str) -> None:
    assert Severity().parse(raw) == raw.strip().lower()


@pytest.mark.parametrize("raw", ["fatal", "", "warn,error"])
def test_q3_severity_option_refuses_anything_else(raw: str) -> None:
    with pytest.raises(ValueError, match="not off, warn or error"):
        Severity().parse(raw)


def test_q3_percent_range_option() -> None:
    assert PercentRange().parse("50-200") == (50, 200)
    assert PercentRange().format((0, 101)) == "0-101"
    for raw in ("200-50", "50", "50-100", "100-200", "5-20000"):
        with pytest.raises(ValueError):
            PercentRange().parse(raw)
    with pytest.raises(Exception, match="LOW-HIGH in percent"):
        Options.from_texts({("quality", "hour-rows-bounds"): "a-b"}, strict=True)


def test_q3_a_held_chunk_makes_its_days_export_held_and_the_day_incomplete() -> None:
    later = datetime(2026, 11, 25, tzinfo=UTC)
    marks = days.Marks(
        facts={"f": later},
        pending=(),
        export_on=True,
        exported_through=later,
        holds=((START, END, "discard-ratio idb 1 f: 20%"),),
    )
    held = days.judge_day(DAY, marks, "UTC")
    assert held.cells["export"] == days.HELD and not held.complete
    assert held.reasons["export"] == "discard-ratio idb 1 f: 20%"
    other = days.judge_day(DAY + timedelta(days=1), marks, "UTC")
    assert other.cells["export"] == days.COMPLETE and other.complete
    found = days.judge_deadlines(
        [held, other], later + timedelta(days=1), datetime.min.time(), "UTC", {}, START
    )
    assert any("pending export" in f.detail for f in found)
