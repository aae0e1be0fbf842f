"""M0: one admission decision for every manual path, every rule, without servers.

The table crosses every path (``gim run``, ``--local``, ``aggregate once``, the API, ``celery
call``) with every rule the decision owns (M3, M4, M5, M7, S2, S13, C2): each path must get
exactly the same verdict and reason, so a side door cannot skip a rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pytest

from gim_tasks.aggregate.safety import Holdings
from gim_tasks.options.values import Options, ScheduleOptions
from gim_tasks.schedule.admission import RunRequest, Via, admit
from gim_tasks.schedule.jobs import (
    AGGREGATE,
    EXPORT,
    EXTRACT,
    MAINTAIN,
    TRANSFORM,
    UPDATE_STATS,
)
from gim_tasks.schedule.localtime import resolve, zone
from gim_tasks.schedule.state import ActiveRun, SchedulerState, WaitingRun

TZ = zone("Europe/Berlin")
#: Aggregation windows open at 04:00 for 23 hours: closed from 03:00 to 04:00 (Berlin).
WINDOWS = {"run-aggregates": "true", "aggregate-schedule": "0 4", "aggregate-duration": "23:00"}


def opts(**overrides: str) -> ScheduleOptions:
    texts = {("schedule", "timezone"): "Europe/Berlin"}
    texts.update({("schedule", key): value for key, value in overrides.items()})
    return Options.from_texts(texts, strict=True).schedule()


def at(text: str) -> datetime:
    return resolve(datetime.strptime(text, "%Y-%m-%d %H:%M"), TZ)


KEEP = {"days-to-keep-facts": 400, "days-to-keep-aggregates": 800}
#: Everything the cases re-aggregate is held.
HELD = Holdings(
    datetime(2020, 1, 1, tzinfo=UTC),
    datetime(2020, 1, 1, tzinfo=UTC),
    (date(2020, 1, 1), date(2027, 12, 31)),
    KEEP,
)
#: Facts purged before 2026-01-01 UTC midnight (01:00 Berlin), SUBHOUR before 2025-06-01;
#: DATE_TIME from 2025-01-01 to 2027-11-23.
PURGED = Holdings(
    datetime(2026, 1, 1, tzinfo=UTC),
    datetime(2025, 6, 1, tzinfo=UTC),
    (date(2025, 1, 1), date(2027, 11, 23)),
    KEEP,
)


def no_refusal(job: str) -> str | None:
    return None


@dataclass(frozen=True)
class Case:
    name: str
    job: str
    verdict: str
    reason: str | None  # a part of the reason, with its rule id
    params: str = ""
    force: bool = False
    options: dict[str, str] = field(default_factory=dict)
    now: str = "2026-11-23 12:00"
    running: tuple[ActiveRun, ...] = ()
    holdings: Holdings = HELD
    waiting: tuple[WaitingRun, ...] = ()
    refusal: Callable[[str], str | None] = no_refusal
    invalid: bool = False


def calendar_short(job: str) -> str | None:
    """A C2 error that spares the job repairing it (as the calendar spares maintenance)."""
    return None if job == MAINTAIN else "configuration check failed: calendar too short"


CASES = [
    Case("free job runs", EXTRACT, "Running", None),
    Case("unknown job", "Job_Nope", "Rejected", "unknown job 'Job_Nope'", invalid=True),
    Case(
        "M4 params on another job",
        TRANSFORM,
        "Rejected",
        "only Job_AggregateGIM takes parameters",
        params="-insertPendingAgg ALLSETS:2026-01-01:2026-01-02",
        invalid=True,
    ),
    Case(
        "M4 bad hierarchy named",
        AGGREGATE,
        "Rejected",
        "H_NOPE",
        params="-insertPendingAgg H_NOPE-DAY:2026-01-01:2026-01-02",
        invalid=True,
    ),
    Case(
        "M4 bad level named",
        AGGREGATE,
        "Rejected",
        "WEEK",
        params="-insertPendingAgg H_AGENT-WEEK:2026-01-01:2026-01-02",
        invalid=True,
    ),
    Case(
        "M4 impossible date named",
        AGGREGATE,
        "Rejected",
        "2026-02-30",
        params="-insertPendingAgg ALLSETS:2026-02-30:2026-03-01",
        invalid=True,
    ),
    Case(
        "M4 unknown flag named",
        AGGREGATE,
        "Rejected",
        "-rebuildEverything",
        params="-rebuildEverything",
        invalid=True,
    ),
    Case(
        "M4 request starts aggregation",
        AGGREGATE,
        "Running",
        "request is queued (M4)",
        params="-insertPendingAgg ALLSETS:2026-01-01:2026-01-02",
    ),
    Case(
        "M4 request joins the running aggregation",
        AGGREGATE,
        "Running",
        "(run 7) processes it (M4)",
        params="-insertPendingAgg ALLSETS:2026-01-01:2026-01-02",
        running=(ActiveRun(7, AGGREGATE, "manual"),),
    ),
    Case(
        "D5 purged range refused",
        AGGREGATE,
        "Rejected",
        "needs the facts of 2025-11-01 to 2025-11-30, which were purged: the oldest day still "
        "held is 2026-01-02 ([gim-etl] days-to-keep-facts=400)",
        params="-insertPendingAgg ALLSETS:2025-11-01:2025-11-30",
        holdings=PURGED,
    ),
    Case(
        "D5 partly purged range refused whole",
        AGGREGATE,
        "Rejected",
        "needs the facts of 2025-12-20 to 2026-01-01, which were purged",
        params="-insertPendingAgg H_AGENT-SUBHOUR:2025-12-20:2026-01-10",
        holdings=PURGED,
    ),
    Case(
        "D5 force does not override",
        AGGREGATE,
        "Rejected",
        "the oldest day still held is 2026-01-02",
        params="-insertPendingAgg ALLSETS:2025-12-31:2025-12-31",
        force=True,
        holdings=PURGED,
    ),
    Case(
        "D5 HOUR is rebuilt from SUBHOUR, held longer",
        AGGREGATE,
        "Running",
        "request is queued (M4)",
        params="-insertPendingAgg H_QUEUE-HOUR:2025-12-01:2025-12-31",
        holdings=PURGED,
    ),
    Case(
        "D5 HOUR from purged SUBHOUR refused",
        AGGREGATE,
        "Rejected",
        "needs the SUBHOUR aggregates of 2025-05-30, which were purged: the oldest day "
        "still held is 2025-06-02 ([gim-etl] days-to-keep-aggregates=800)",
        params="-insertPendingAgg H_QUEUE-HOUR:2025-05-30:2025-05-30",
        holdings=PURGED,
    ),
    Case(
        "D5 MONTH is rebuilt from DAY, kept forever",
        AGGREGATE,
        "Running",
        "request is queued (M4)",
        params="-insertPendingAgg H_QUEUE-MONTH:2025-01-01:2025-01-31",
        holdings=PURGED,
    ),
    Case(
        "D5 outside DATE_TIME refused",
        AGGREGATE,
        "Rejected",
        "-insertPendingAgg range 2027-12-01:2027-12-31 lies outside DATE_TIME, which holds "
        "2025-01-01 to 2027-11-23",
        params="-insertPendingAgg H_QUEUE-MONTH:2027-12-01:2027-12-31",
        holdings=PURGED,
    ),
    Case(
        "D5 reaching outside DATE_TIME refused",
        AGGREGATE,
        "Rejected",
        "reaches outside DATE_TIME",
        params="-insertPendingAgg H_QUEUE-MONTH:2024-12-31:2025-01-31",
        holdings=PURGED,
    ),
    Case(
        "D5 Online flavor leaves only held days",
        AGGREGATE,
        "Running",
        "request is queued (M4)",
        params="-insertPendingAgg H_AGENT-SUBHOUR.Online:2025-11-01:2026-11-30",
        holdings=PURGED,
    ),
    Case(
        "M2 Transform starts while Extract runs",
        TRANSFORM,
        "Running",
        None,
        running=(ActiveRun(3, EXTRACT, "scheduled"),),
    ),
    Case("M7 statistics not manual", UPDATE_STATS, "Rejected", "update-stats-schedule"),
    Case("M7 export not manual", EXPORT, "Rejected", "export-schedule when run-export=true"),
    Case("M7 forced export admitted", EXPORT, "Running", None, force=True),
    Case(
        "C2 refuses",
        EXTRACT,
        "Rejected",
        "calendar too short (C2)",
        refusal=calendar_short,
    ),
    Case("C2 spares the repairing job", MAINTAIN, "Running", None, refusal=calendar_short),
    Case(
        "C2 applies to a forced run",
        EXPORT,
        "Rejected",
        "(C2)",
        force=True,
        refusal=calendar_short,
    ),
    Case(
        "S2 already running",
        EXTRACT,
        "Rejected",
        "already running as run 3 (S2)",
        running=(ActiveRun(3, EXTRACT, "scheduled"),),
    ),
    Case(
        "S2 already waiting",
        EXPORT,
        "Rejected",
        "already waiting as run 4 (S2)",
        force=True,
        waiting=(WaitingRun(4, EXPORT, "scheduled"),),
    ),
    Case(
        "M3 outside the window",
        AGGREGATE,
        "Rejected",
        "no aggregation window is open",
        options=WINDOWS,
        now="2026-11-23 03:30",
    ),
    Case(
        "M3 outside the window keeps the request queued",
        AGGREGATE,
        "Rejected",
        "stays queued for the next window",
        params="-insertPendingAgg ALLSETS:2026-01-01:2026-01-02",
        options=WINDOWS,
        now="2026-11-23 03:59",
    ),
    Case(
        "M3 inside the window, not running",
        AGGREGATE,
        "Running",
        None,
        options=WINDOWS,
        now="2026-11-23 04:00",
    ),
    Case(
        "M3 inside the window, running",
        AGGREGATE,
        "Rejected",
        "already running as run 9 (S2)",
        options=WINDOWS,
        now="2026-11-24 02:59",
        running=(ActiveRun(9, AGGREGATE, "scheduled"),),
    ),
    Case("M3 run-aggregates=false runs", AGGREGATE, "Running", None, now="2026-11-23 03:30"),
    Case(
        "M5 maintenance waits for others",
        MAINTAIN,
        "Scheduled",
        "waiting for Job_ExtractICON run 5 (M5)",
        running=(ActiveRun(5, EXTRACT, "scheduled"),),
    ),
    Case(
        "S13 others wait for maintenance",
        TRANSFORM,
        "Scheduled",
        "waiting for maintenance run 6 (S13)",
        running=(ActiveRun(6, MAINTAIN, "manual"),),
    ),
    Case(
        "S13 a forced run waits too",
        EXPORT,
        "Scheduled",
        "waiting for maintenance run 6 (S13)",
        force=True,
        running=(ActiveRun(6, MAINTAIN, "scheduled"),),
    ),
]


@pytest.mark.parametrize("via", list(Via), ids=[v.name for v in Via])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_m0_every_path_gets_the_same_decision_for_every_rule(case: Case, via: Via) -> None:
    request = RunRequest(case.job, "alice", via, case.params, case.force)
    state = SchedulerState(running=case.running, waiting=case.waiting)
    decision = admit(
        opts(**case.options), at(case.now), state, request, case.refusal, case.holdings
    )
    assert decision.verdict == case.verdict, decision
    assert decision.invalid == case.invalid
    if case.reason is None:
        assert decision.reason is None
    else:
        assert decision.reason is not None and case.reason in decision.reason, decision.reason


def test_m4_the_parsed_request_is_returned_for_queueing() -> None:
    request = RunRequest(
        AGGREGATE, "a", Via.LOCAL, "-insertPendingAgg H_AGENT-DAY:2026-01-01:2026-01-03"
    )
    decision = admit(opts(), at("2026-11-23 12:00"), SchedulerState(), request, holdings=HELD)
    assert decision.reaggregation is not None
    assert decision.reaggregation.hierarchies == ("H_AGENT",)
    assert decision.reaggregation.level == "DAY"
    assert decision.joins is None


def test_m3_window_edges_decided_by_the_injected_clock() -> None:
    """Before, at the opening of, inside and at the end of a window: no `if` on the real clock."""
    request = RunRequest(AGGREGATE, "a", Via.CLI)
    verdicts = [
        admit(opts(**WINDOWS), at(now), SchedulerState(), request).verdict
        for now in ("2026-11-23 03:59", "2026-11-23 04:00", "2026-11-24 02:59", "2026-11-24 03:00")
    ]
    assert verdicts == ["Rejected", "Running", "Running", "Rejected"]


def test_in_process_paths_are_exactly_local_and_aggregate_once() -> None:
    assert {v for v in Via if v.in_process} == {Via.LOCAL, Via.AGGREGATE_ONCE}


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        admit(
            opts(),
            datetime(2026, 11, 23, 12, 0),
            SchedulerState(),
            RunRequest(EXTRACT, "a", Via.CLI),
        )
    assert (
        admit(
            opts(),
            datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
            SchedulerState(),
            RunRequest(EXTRACT, "a", Via.CLI),
        ).verdict
        == "Running"
    )


@pytest.mark.parametrize("via", list(Via))
@pytest.mark.parametrize("force", [False, True])
def test_b1_no_path_runs_the_backfill_job_by_hand(via: Via, force: bool) -> None:
    """Job_BackfillGIM runs only the items of a back-fill (B1): every manual path, forced or
    not, is refused as a malformed request (nothing recorded) and pointed at the command."""
    from gim_tasks.schedule.jobs import BACKFILL

    request = RunRequest(BACKFILL, "ops", via, force=force)
    decision = admit(opts(), datetime(2026, 11, 23, 12, tzinfo=UTC), SchedulerState(), request)
    assert decision.verdict == "Rejected" and decision.invalid
    assert decision.reason is not None and "gim backfill create" in decision.reason
