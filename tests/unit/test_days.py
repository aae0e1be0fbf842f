"""SPEC Q1, Q2 decided purely (monitor/days.py): a local data day's stages from the marks, its
ready-by deadline across DST, deadline, at-risk and holes (issue 37)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

import pytest

from gim_tasks.lifecycle import Condition
from gim_tasks.monitor.days import (
    AGGREGATION,
    EXPORT_STAGE,
    Marks,
    bounds,
    deadline_of,
    grid,
    judge_day,
    judge_deadlines,
)

TZ = "Europe/Berlin"
FACT = "interaction_fact"
READY = time(7, 0)


def marks(newest: datetime | None, pending: tuple[datetime, ...] = (), **kw: object) -> Marks:
    return Marks(
        facts={FACT: newest, "campaign_attempt_fact": None},
        pending=pending,
        export_on=bool(kw.pop("export_on", False)),
        exported_through=kw.pop("exported_through", None),  # type: ignore[arg-type]
        epoch=kw.pop("epoch", datetime(2026, 1, 1, tzinfo=UTC)),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_q1_a_day_is_23_or_25_hours_across_dst_and_due_at_ready_by_the_next_morning() -> None:
    spring, fall = bounds(date(2027, 3, 28), TZ), bounds(date(2026, 10, 25), TZ)
    assert (spring[1] - spring[0]) == timedelta(hours=23)
    assert (fall[1] - fall[0]) == timedelta(hours=25)
    assert deadline_of(date(2026, 12, 3), READY, TZ) == datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
    # A ready-by inside the spring-forward gap is the first instant after it (S10).
    assert deadline_of(date(2027, 3, 27), time(2, 30), TZ) == datetime(
        2027, 3, 28, 1, 0, tzinfo=UTC
    )


def test_q2_stages_from_the_marks() -> None:
    day = date(2026, 12, 3)
    start, end = bounds(day, TZ)
    done = judge_day(day, marks(end + timedelta(minutes=5)), TZ)
    assert done.cells == {
        FACT: "complete",
        "campaign_attempt_fact": "n/a",  # no row: not judged
        AGGREGATION: "complete",
    }
    assert done.complete
    waiting = judge_day(day, marks(end + timedelta(minutes=5), (start + timedelta(hours=3),)), TZ)
    assert waiting.cells[AGGREGATION] == "pending" and not waiting.complete
    short = judge_day(day, marks(end - timedelta(minutes=20)), TZ)
    assert (short.cells[FACT], short.cells[AGGREGATION]) == ("pending", "pending")
    exported = judge_day(day, marks(end, export_on=True, exported_through=end - timedelta(1)), TZ)
    assert exported.cells[EXPORT_STAGE] == "pending"
    purged = judge_day(day, marks(None, purged_facts=end, purged_aggregates=end), TZ)
    assert purged.cells[FACT] == "purged" and purged.cells[AGGREGATION] == "purged"
    assert not judge_day(day, marks(None), TZ).judged  # nothing to judge yet


def test_q1_deadline_at_risk_before_and_deadline_after_ready_by() -> None:
    day = date(2026, 12, 3)
    start, end = bounds(day, TZ)
    rows = [judge_day(day, marks(end + timedelta(minutes=1), (start,)), TZ)]
    due = deadline_of(day, READY, TZ)
    work = {AGGREGATION: 1800.0}  # half an hour of aggregation left
    assert judge_deadlines(rows, due - timedelta(hours=1), READY, TZ, work, None) == []  # no epoch
    epoch = datetime(2026, 11, 1, tzinfo=UTC)
    assert judge_deadlines(rows, due - timedelta(hours=1), READY, TZ, work, epoch) == []
    risk = judge_deadlines(rows, due - timedelta(minutes=20), READY, TZ, work, epoch)
    assert [(f.condition, f.day) for f in risk] == [(Condition.DEADLINE_AT_RISK, day)]
    late = judge_deadlines(rows, due + timedelta(seconds=15), READY, TZ, work, epoch)
    assert [(f.condition, f.day) for f in late] == [(Condition.DEADLINE, day)]
    assert "pending aggregation (Q1)" in late[0].detail
    # A day that began before the scheduler's first tick is never judged.
    assert judge_deadlines(rows, due + timedelta(hours=1), READY, TZ, work, end) == []


def test_q2_a_pending_day_behind_a_complete_one_is_a_hole() -> None:
    older, newer = date(2026, 12, 2), date(2026, 12, 3)
    older_start, _ = bounds(older, TZ)
    _, newer_end = bounds(newer, TZ)
    state = marks(newer_end + timedelta(minutes=1), (older_start + timedelta(hours=5),))
    rows = grid(state, newer, 2, TZ)
    found = judge_deadlines(
        rows, newer_end + timedelta(hours=1), READY, TZ, {}, datetime(2026, 11, 1, tzinfo=UTC)
    )
    assert [(f.condition, f.day) for f in found] == [
        (Condition.DEADLINE, older),
        (Condition.INCOMPLETE_DAY, older),
    ]


def test_q1_a_normal_dst_week_raises_nothing() -> None:
    """The week of the fall-back (25-hour day): every day complete in time, nothing found."""
    last = date(2026, 10, 28)
    _, end = bounds(last, TZ)
    rows = grid(marks(end + timedelta(minutes=3)), last, 7, TZ)
    assert all(row.complete for row in rows)
    assert {round((r.end - r.start).total_seconds() / 3600) for r in rows} == {24, 25}
    for hour in range(0, 24 * 7, 5):
        now = end - timedelta(days=6) + timedelta(hours=hour)
        assert judge_deadlines(rows, now, READY, TZ, {}, datetime(2026, 1, 1, tzinfo=UTC)) == []


def test_q2_an_exported_day_with_a_chunk_gone_from_disk_is_missing() -> None:
    day = date(2026, 12, 3)
    start, end = bounds(day, TZ)
    hour = timedelta(hours=1)
    every = tuple((start + n * hour, start + (n + 1) * hour) for n in range(-2, 26))
    base = {"export_on": True, "exported_through": end + hour}
    whole = judge_day(day, marks(end + hour, chunks=every, **base), TZ)  # type: ignore[arg-type]
    assert whole.cells[EXPORT_STAGE] == "complete"
    gap = every[:8] + every[9:]  # 05:00-06:00 lost
    lost = judge_day(day, marks(end + hour, chunks=gap, **base), TZ)  # type: ignore[arg-type]
    assert lost.cells[EXPORT_STAGE] == "missing" and not lost.complete
    later = tuple(c for c in every if c[0] >= end)  # the export began after this day
    assert judge_day(day, marks(end + hour, chunks=later, **base), TZ).cells[EXPORT_STAGE] == "n/a"  # type: ignore[arg-type]
    kept = judge_day(day, marks(end + hour, chunks=(), chunks_kept_from=end, **base), TZ)  # type: ignore[arg-type]
    assert kept.cells[EXPORT_STAGE] == "purged"
    # Where the folder cannot be read, the mark alone says complete.
    assert judge_day(day, marks(end + hour, **base), TZ).cells[EXPORT_STAGE] == "complete"  # type: ignore[arg-type]


def test_q2_a_refused_re_aggregation_shows_with_its_reason_and_a_later_one_clears_it() -> None:
    day = date(2026, 12, 3)
    _, end = bounds(day, TZ)
    why = "facts before 2026-11-01 were purged ([gim-etl] days-to-keep-gim-facts) (D5)"
    refused = marks(end + timedelta(minutes=1), requests=((day, day, why),))  # type: ignore[arg-type]
    shown = judge_day(day, refused, TZ)
    assert shown.cells[AGGREGATION] == "refused" and shown.reasons[AGGREGATION] == why
    assert shown.complete  # the aggregates are as they were: the day is not held back
    redone = marks(end + timedelta(minutes=1), requests=((day, day, why), (day, day, None)))  # type: ignore[arg-type]
    assert judge_day(day, redone, TZ).cells[AGGREGATION] == "complete"


def test_q1_ready_by_per_category_gives_each_stage_its_deadline() -> None:
    """``07:00, Export=09:00``: the facts and the aggregation are due at 07:00, the export two
    hours later; a late export alone is not a deadline at 07:30."""
    from gim_tasks.options.types import ReadyBy

    ready = ReadyBy(("ETL", "Aggregation", "Export")).parse("07:00, export=09:00")
    assert ReadyBy(("ETL", "Aggregation", "Export")).format(ready) == "07:00, Export=09:00"
    day = date(2026, 12, 3)
    _, end = bounds(day, TZ)
    state = marks(end + timedelta(minutes=1), export_on=True, exported_through=end - timedelta(1))
    rows = [judge_day(day, state, TZ)]
    assert rows[0].cells[EXPORT_STAGE] == "pending" and rows[0].cells[AGGREGATION] == "complete"
    epoch = datetime(2026, 11, 1, tzinfo=UTC)
    seven = deadline_of(day, time(7, 0), TZ)
    assert judge_deadlines(rows, seven + timedelta(minutes=30), ready, TZ, {}, epoch) == []
    at_risk = judge_deadlines(
        rows, seven + timedelta(minutes=30), ready, TZ, {EXPORT_STAGE: 7200.0}, epoch
    )
    assert [f.condition for f in at_risk] == [Condition.DEADLINE_AT_RISK]
    late = judge_deadlines(rows, seven + timedelta(hours=2), ready, TZ, {}, epoch)
    assert [f.condition for f in late] == [Condition.DEADLINE]
    assert "08:00 UTC: pending export (Q1)" in late[0].detail  # 09:00 Berlin
    # The same day under one ready-by for all: late at 07:00 already.
    assert judge_deadlines(rows, seven + timedelta(minutes=30), READY, TZ, {}, epoch)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("7am", "not a time of day HH:mm (the default)"),
        ("07:00, Exports=08:00", "not CATEGORY=HH:mm with a known category"),
        ("07:00, Export=25:00", "'25:00' for Export is not a time of day"),
        ("07:00, Export=08:00, export=09:00", "Export is given twice"),
    ],
)
def test_q1_ready_by_refuses_what_it_cannot_read(raw: str, why: str) -> None:
    from gim_tasks.options.types import ReadyBy

    with pytest.raises(ValueError, match=re.escape(why)):
        ReadyBy(("ETL", "Aggregation", "Export")).parse(raw)
