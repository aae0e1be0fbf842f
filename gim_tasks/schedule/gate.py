"""The exclusivity gate: who waits for whom, in one table (SPEC S1, S2, S4-S8, S13, M5).

Pure: ``gate(job, ask, state)`` answers whether ``job`` may start now for whoever asks (the
scheduler's firing or its waiting run, an operator's manual run), and if not, whether it waits
(Scheduled, released when the rule clears) or is skipped, with the words an operator reads,
ending with the rule id. Every caller asks here: the firing engine for a firing, a release, the
aggregation window, Transform after Extract and M3's resumption; admission for a manual run;
the firing ledger for the verdict of a window opening nobody launched. The words exist once,
in :data:`TABLE`.

How the table is read: a job takes the rows of its catalogue class (``JobSpec.exclusivity``);
the rows whose ``who`` holds that class and whose ``asks`` holds the asker are tried in order,
and the first whose blocker is present decides, except that a ``stop`` row only adds a stop of
the blocking run and reading goes on (S5: a due cycle stops scheduled maintenance, then waits
for it; S7: maintenance pauses aggregation, then waits for it). A run already waiting is asked
again each tick (``waiting=`` its id): ``new`` rows do not apply to it, ``waiting`` rows only
to it, and anything but ``go`` keeps it waiting. docs/RULES.md points each rule at its rows.

The decisions are made under the admission lock (``gim_tasks.db.locks.ADMISSION``, held by
the beat's tick and by every manual request around reading the state, asking the gate and
recording the answer), so two askers never both see a job free.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import StrEnum

from gim_tasks.lifecycle import StopKind, Verdict
from gim_tasks.schedule.holds import Holds
from gim_tasks.schedule.jobs import TRANSFORM, exclusivity_of
from gim_tasks.schedule.localtime import wall
from gim_tasks.schedule.state import ActiveRun, SchedulerState, WaitingRun


class Ask(StrEnum):
    """Who asks for the start."""

    SCHEDULER = "scheduler"  # a firing, or a run the scheduler launched that is waiting
    MANUAL = "manual"  # an operator's run, forced or not (gim run, the API, celery call)


class Outcome(StrEnum):
    GO = "go"
    WAIT = "wait"  # recorded as Scheduled; released when nothing blocks it any more
    SKIP = "skip"  # starts nothing (the scheduler records a skipped firing; a manual request
    # is Rejected)
    STOP = "stop"  # a table row only: stop the blocking run, then read on


class Blocker(StrEnum):
    """What in the state a row looks for (see :data:`FINDERS`)."""

    OPERATOR_SKIP = "an operator skipped this firing"
    PAUSED = "the job, or every job, is paused"
    BLACKOUT = "a blackout window naming the job covers the firing's instant"
    ITSELF = "the job itself, running"
    ITSELF_WAITING = "the job itself, waiting"
    ETL_CYCLE = "an ETL cycle in progress (Extract or Transform running, or a Transform owed)"
    CYCLE_WAITING = "an ETL cycle waiting to start"
    MAINTENANCE = "maintenance running"
    SCHEDULED_MAINTENANCE = "maintenance the scheduler started, running"
    MANUAL_MAINTENANCE = "maintenance an operator started, running"
    MAINTENANCE_WAITING = "maintenance waiting to start"
    AGGREGATION = "aggregation running"
    OTHERS = "every other run, and a Transform owed"
    OTHERS_BUT_STATISTICS = "every other run but statistics, and a Transform owed"
    SAME_ITEM = "a back-fill item of the same day and step, running"
    POOL = "no free slot in the job's database pool for its weight"


Phase = str  # "any" | "new" (a firing or request) | "waiting" (a run already waiting)


@dataclass(frozen=True)
class Row:
    id: str  # the row's name: its rule id first (docs/RULES.md cites it)
    who: tuple[str, ...]  # exclusivity classes of the asking job
    asks: tuple[Ask, ...]
    blocker: Blocker
    outcome: Outcome
    #: Formatted with {run} (the first blocking run's id), {runs} (every blocker, in words),
    #: {job} (the asking job) and {planned} (the firing's local time, for a firing).
    words: str
    phase: Phase = "any"
    kind: StopKind | None = None  # a stop row's stop kind (R4: planned stops)


S, M = Ask.SCHEDULER, Ask.MANUAL
ALL = ("extract", "transform", "aggregation", "maintenance", "statistics", "export")
#: B2: who gets a free slot first (lower first): ETL > maintenance > aggregation > export >
#: statistics > back-fill.
PRIORITY = {
    "extract": 0,
    "transform": 0,
    "maintenance": 1,
    "aggregation": 2,
    "export": 3,
    "statistics": 4,
    "backfill": 5,
}
_FIRES = ("extract", "aggregation", "maintenance", "statistics", "export")
_NOT_WINDOW = ("transform", "maintenance", "statistics", "export")
_MAINTENANCE_HELD = ("extract", "transform", "aggregation", "export")
_UNDER_MAINTENANCE = "waiting for maintenance run {run} (S13)"
_WINDOW_HELD = "window opened during maintenance: starts after it (S7)"

#: Who waits for whom. Order matters within a class and asker: the first row that applies
#: decides (stop rows excepted).
TABLE: tuple[Row, ...] = (
    # P1-P3: operators hold a scheduled firing back (Transform has none of its own: it follows
    # its Extract). A run already waiting, and manual starts, are not held.
    Row("P2-skip", _FIRES, (S,), Blocker.OPERATOR_SKIP, Outcome.SKIP,
        "skipped by {actor}: {reason} (P2)", phase="new"),
    Row("P1-paused", (*_FIRES, "backfill"), (S,), Blocker.PAUSED, Outcome.SKIP,
        "{words} (P1)", phase="new"),
    Row("P3-blackout", (*_FIRES, "backfill"), (S,), Blocker.BLACKOUT, Outcome.SKIP,
        "in {words} (P3)", phase="new"),
    # S6: statistics never overlap scheduled maintenance; they are skipped, not queued.
    Row("S6-skip", ("statistics",), (S,), Blocker.SCHEDULED_MAINTENANCE, Outcome.SKIP,
        "scheduled maintenance run {run} is running (S6)"),
    # S7: an aggregation window does not start while maintenance runs or waits.
    Row("S7-maintenance", ("aggregation",), (S,), Blocker.MAINTENANCE, Outcome.WAIT,
        _WINDOW_HELD),
    Row("S7-maintenance-waiting", ("aggregation",), (S,), Blocker.MAINTENANCE_WAITING,
        Outcome.WAIT, _WINDOW_HELD),
    Row("S2-window", ("aggregation",), (S,), Blocker.ITSELF, Outcome.WAIT,
        "waiting for {job} run {run} to end (S2)"),
    Row("S2-window-waiting", ("aggregation",), (S,), Blocker.ITSELF_WAITING, Outcome.WAIT,
        "waiting for {job} run {run} to start (S2)"),
    # S1: at most one cycle pending; S13 before S5: manual maintenance is never preempted.
    Row("S1-pending", ("extract",), (S,), Blocker.ITSELF_WAITING, Outcome.SKIP,
        "a cycle is already pending as run {run} (S1: at most one pending cycle)"),
    # S2: one run of a job at a time, whoever started it.
    Row("S2-running", _NOT_WINDOW, (S, M), Blocker.ITSELF, Outcome.SKIP,
        "already running as run {run} (S2)"),
    Row("S2-running-manual", ("extract", "aggregation"), (M,), Blocker.ITSELF, Outcome.SKIP,
        "already running as run {run} (S2)"),
    Row("S2-waiting", _NOT_WINDOW, (S, M), Blocker.ITSELF_WAITING, Outcome.SKIP,
        "already waiting as run {run} (S2)"),
    Row("S2-waiting-manual", ("extract", "aggregation"), (M,), Blocker.ITSELF_WAITING,
        Outcome.SKIP, "already waiting as run {run} (S2)"),
    # S13: scheduled launches wait for maintenance an operator started; they never preempt it.
    Row("S13-scheduled", ("extract", "transform", "statistics", "export"), (S,),
        Blocker.MANUAL_MAINTENANCE, Outcome.WAIT,
        "waiting for manual maintenance run {run} (S13)"),
    # S5: a due cycle stops scheduled maintenance (a planned stop), then waits for it to end.
    Row("S5-preempt", ("extract",), (S,), Blocker.SCHEDULED_MAINTENANCE, Outcome.STOP,
        "preempted by the ETL cycle planned at {planned} (S5); the steps left resume at the "
        "next maintenance", phase="new", kind=StopKind.PREEMPTED),
    Row("S5-wait", ("extract",), (S,), Blocker.SCHEDULED_MAINTENANCE, Outcome.WAIT,
        "waiting for maintenance run {run} to stop (S5)"),
    Row("S1-busy", ("extract",), (S,), Blocker.ETL_CYCLE, Outcome.WAIT,
        "previous ETL cycle still running (S1)"),
    # S4, S7: maintenance pauses aggregation and waits for every other run (S6: not for
    # statistics) and an owed Transform; M5: manual maintenance waits for every other run.
    Row("S7-pause", ("maintenance",), (S,), Blocker.AGGREGATION, Outcome.STOP,
        "paused for maintenance; resumes after it (S7)", phase="new",
        kind=StopKind.MAINTENANCE),
    Row("S4-others", ("maintenance",), (S,), Blocker.OTHERS_BUT_STATISTICS, Outcome.WAIT,
        "waiting for {runs} (S4)"),
    Row("M5-others", ("maintenance",), (M,), Blocker.OTHERS, Outcome.WAIT,
        "waiting for {runs} (M5); scheduled launches will wait for this maintenance (S13)"),
    Row("S5-cycle-first", ("maintenance",), (S, M), Blocker.CYCLE_WAITING, Outcome.WAIT,
        "waiting for the ETL cycle pending as run {run} (S5)", phase="waiting"),
    # S8: export waits while maintenance runs, and while it waits (writer preference, so
    # maintenance is not starved).
    Row("S8-maintenance", ("export",), (S,), Blocker.SCHEDULED_MAINTENANCE, Outcome.WAIT,
        "waiting for maintenance run {run} (S8)"),
    Row("S8-maintenance-waiting", ("export",), (S,), Blocker.MAINTENANCE_WAITING,
        Outcome.WAIT, "maintenance run {run} is waiting to start (S8)"),
    # S13 [beyond]: manual runs wait while maintenance runs; once waiting, also while it waits.
    Row("S13-manual", ("extract", "transform", "aggregation", "statistics", "export"), (M,),
        Blocker.MAINTENANCE, Outcome.WAIT, _UNDER_MAINTENANCE),
    Row("S8-manual-maintenance-waiting", _MAINTENANCE_HELD, (M,),
        Blocker.MAINTENANCE_WAITING, Outcome.WAIT,
        "maintenance run {run} is waiting to start (S8)", phase="waiting"),
    # B1: a back-fill's items come last: never during maintenance or while it waits, never
    # before an ETL cycle waiting to start, never two of one day and step at once (the
    # partial unique index uq_job_run_backfill_item_running refuses a second at its claim).
    Row("B1-maintenance", ("backfill",), (S,), Blocker.MAINTENANCE, Outcome.WAIT,
        "maintenance run {run} is running: back-fill items wait for it (B1)"),
    Row("B1-maintenance-waiting", ("backfill",), (S,), Blocker.MAINTENANCE_WAITING,
        Outcome.WAIT, "maintenance run {run} is waiting to start: back-fill items wait (B1)"),
    Row("B1-cycle-first", ("backfill",), (S,), Blocker.CYCLE_WAITING, Outcome.WAIT,
        "the ETL cycle waiting as run {run} goes first (B1)"),
    Row("B1-same-item", ("backfill",), (S,), Blocker.SAME_ITEM, Outcome.WAIT,
        "{job} run {run} is replaying the same day and step (B1)"),
    # B2: a job with a weight in the pool waits for free slots; higher priorities first, and
    # back-fill items leave room for the heaviest job above them (so they never hold back an
    # ETL cycle, B1).
    Row("B2-pool", (*ALL, "backfill"), (S, M), Blocker.POOL, Outcome.WAIT,
        "waiting for {words} (B2)"),
)  # fmt: skip

ROWS = {row.id: row for row in TABLE}
#: The ledger's verdict of a firing an operator's hold skipped (O1), by row.
HELD_VERDICTS = {
    "P1-paused": Verdict.PAUSED,
    "P2-skip": Verdict.OPERATOR_SKIP,
    "P3-blackout": Verdict.BLACKOUT,
}

#: The reason a waiting run is released with, by class and asker (the rules that held it).
RELEASED: dict[tuple[str, Ask], str] = {
    ("extract", S): "previous cycle and maintenance ended (S1, S5)",
    ("maintenance", S): "no other run active (S4)",
    ("maintenance", M): "no other run active (M5)",
    ("statistics", S): "maintenance ended (S13)",
    ("statistics", M): "maintenance ended (S13)",
}
RELEASED_OTHERWISE = "maintenance ended (S4, S13)"


@dataclass(frozen=True)
class Blocking:
    """One thing in the state that blocks: the run (if it is one) and how to name it."""

    run: ActiveRun | WaitingRun | None
    text: str
    fields: tuple[tuple[str, str], ...] = ()  # more words for the row's text


@dataclass(frozen=True)
class Decision:
    outcome: Outcome  # GO, WAIT or SKIP
    reason: str | None = None
    row: str | None = None  # the deciding row's id
    #: Runs to stop first, with the reason and the kind (stop rows that applied).
    stops: tuple[tuple[ActiveRun, str, StopKind], ...] = ()

    @property
    def go(self) -> bool:
        return self.outcome is Outcome.GO


@dataclass(frozen=True)
class _Asking:
    job: str
    state: SchedulerState
    waiting: int | None  # the asking run's id when it is already waiting
    tz: tzinfo
    firing: tuple[str, datetime] | None  # the firing asking: its id and instant

    def running(self, cls: str) -> list[ActiveRun]:
        return [run for run in self.state.running if exclusivity_of(run.job) == cls]

    def waiting_of(self, cls: str) -> list[WaitingRun]:
        return [
            run
            for run in self.state.waiting
            if exclusivity_of(run.job) == cls and run.run_id != self.waiting
        ]


def _named(run: ActiveRun) -> Blocking:
    return Blocking(run, f"{run.job} run {run.run_id}" if run.run_id > 0 else run.job)


def _others(asking: _Asking, spare: tuple[str, ...]) -> list[Blocking]:
    """Every running run but maintenance and the ``spare`` classes, and an owed Transform."""
    state = asking.state
    found = [
        _named(run)
        for run in state.running
        if exclusivity_of(run.job) not in ("maintenance", *spare)
    ]
    cycle = state.last_cycle
    if cycle is not None and state.transform_owed and not asking.running("transform"):
        local = wall(cycle.planned_at, asking.tz).strftime("%Y-%m-%d %H:%M")
        found.append(Blocking(None, f"{TRANSFORM} of the cycle planned at {local}"))
    return found


def _item_of(firing: str | None) -> str | None:
    """A back-fill item's step and day from its firing id ``backfill:ID:STEP:DAY[#k]``."""
    if not firing or not firing.startswith("backfill:"):
        return None
    return ":".join(firing.split("#")[0].split(":")[2:])


def _same_item(asking: _Asking) -> list[Blocking]:
    item = _item_of(asking.firing[0] if asking.firing else None)
    if item is None:
        return []
    return [_named(r) for r in asking.running("backfill") if _item_of(r.firing_id) == item]


def _pool(asking: _Asking) -> list[Blocking]:
    """B2: the slot holders when ``asking.job`` does not fit: its weight, plus the room kept
    for the heaviest job of a higher priority when it is a back-fill item, plus the weights of
    waiting runs of a higher priority (they go first), is more than the free slots."""
    pools, job = asking.state.pools, asking.job
    weight = pools.weights.get(job, 0)
    if not weight or not pools.capacity:
        return []
    rank = PRIORITY[exclusivity_of(job) or "backfill"]
    above = [
        w
        for other, w in pools.weights.items()
        if PRIORITY.get(exclusivity_of(other) or "", 9) < rank
    ]
    kept = max(above, default=0) if exclusivity_of(job) == "backfill" else 0
    ahead = [
        run
        for run in asking.state.waiting
        if run.run_id != asking.waiting
        and pools.weights.get(run.job)
        and PRIORITY.get(exclusivity_of(run.job) or "", 9) < rank
    ]
    owed = sum(pools.weights[run.job] for run in ahead)
    mine = (rank, asking.waiting if asking.waiting is not None else 2**62)
    queue = [
        run
        for run in asking.state.waiting
        if run.run_id != asking.waiting
        and pools.weights.get(run.job)
        and (PRIORITY.get(exclusivity_of(run.job) or "", 9), run.run_id) < mine
    ]
    free = pools.capacity - pools.held
    if weight + kept + owed <= free:
        return []
    holders = ", ".join(f"{h.job} run {h.run_id}" for h in pools.holders) or "none"
    words = (
        f"{weight} slot(s) of pool {pools.name}: {pools.held} of {pools.capacity} held by "
        f"{holders}; position {len(queue) + 1} in its queue"
    )
    if kept:
        words += f"; {kept} kept for the jobs above back-fill"
    return [Blocking(None, pools.name, (("words", words),))]


def _skipped(asking: _Asking) -> list[Blocking]:
    skip = asking.firing and asking.state.holds.skips.get(asking.firing[0])
    if not skip:
        return []
    return [Blocking(None, skip.firing_id, (("actor", skip.actor), ("reason", skip.reason)))]


def _paused(asking: _Asking) -> list[Blocking]:
    pause = asking.state.holds.pause_of(asking.job, asking.firing[1] if asking.firing else None)
    return [Blocking(None, pause.job, (("words", pause.words),))] if pause else []


def _blacked_out(asking: _Asking) -> list[Blocking]:
    if asking.firing is None:
        return []
    job, instant = asking.job, asking.firing[1]
    window = asking.state.holds.blackout_of(job, exclusivity_of(job), instant, asking.tz)
    return [Blocking(None, window.name, (("words", window.words),))] if window else []


FINDERS: dict[Blocker, Callable[[_Asking], list[Blocking]]] = {
    Blocker.OPERATOR_SKIP: _skipped,
    Blocker.PAUSED: _paused,
    Blocker.BLACKOUT: _blacked_out,
    Blocker.ITSELF: lambda a: [_named(r) for r in a.state.running if r.job == a.job],
    Blocker.ITSELF_WAITING: lambda a: [
        Blocking(w, str(w.run_id))
        for w in a.state.waiting
        if w.job == a.job and w.run_id != a.waiting
    ],
    Blocker.ETL_CYCLE: lambda a: [Blocking(None, "ETL")] if a.state.etl_busy else [],
    Blocker.CYCLE_WAITING: lambda a: [Blocking(w, str(w.run_id)) for w in a.waiting_of("extract")],
    Blocker.MAINTENANCE: lambda a: [_named(r) for r in a.running("maintenance")],
    Blocker.SCHEDULED_MAINTENANCE: lambda a: [
        _named(r) for r in a.running("maintenance") if r.by_scheduler
    ],
    Blocker.MANUAL_MAINTENANCE: lambda a: [
        _named(r) for r in a.running("maintenance") if not r.by_scheduler
    ],
    Blocker.MAINTENANCE_WAITING: lambda a: [
        Blocking(w, str(w.run_id)) for w in a.waiting_of("maintenance")
    ],
    Blocker.AGGREGATION: lambda a: [_named(r) for r in a.running("aggregation")],
    Blocker.OTHERS: lambda a: _others(a, ()),
    Blocker.OTHERS_BUT_STATISTICS: lambda a: _others(a, ("statistics",)),
    Blocker.SAME_ITEM: _same_item,
    Blocker.POOL: _pool,
}


def held(
    job: str, holds: Holds, firing: tuple[str, datetime], tz: tzinfo
) -> tuple[Verdict, str] | None:
    """P1-P3: the verdict and the reason of an operator's hold on this firing of ``job``
    (its id and instant), or None. The engine, the ledger (the watchdog, S12's collapse), the
    plan's marks and Next Run ask here."""
    if not holds or exclusivity_of(job) is None:
        return None
    state = SchedulerState(holds=holds)
    decision = gate(job, Ask.SCHEDULER, state, tz=tz, firing=firing, only=HELD_VERDICTS)
    return None if decision.go else (HELD_VERDICTS[decision.row or ""], decision.reason or "")


def rows_for(cls: str, ask: Ask) -> list[Row]:
    """The rows a job of class ``cls`` is judged by when ``ask`` asks, in order."""
    return [row for row in TABLE if cls in row.who and ask in row.asks]


def gate(
    job: str,
    ask: Ask,
    state: SchedulerState,
    *,
    waiting: int | None = None,
    planned: str = "",
    tz: tzinfo = UTC,
    firing: tuple[str, datetime] | None = None,
    only: Collection[str] | None = None,
) -> Decision:
    """May ``job`` start now?

    Args:
        job: the job asking to start (its class comes from the catalogue).
        ask: the scheduler or an operator.
        state: what is Running and Scheduled (with this tick's earlier decisions in it).
        waiting: the asking run's id when it is already waiting (a release), else None.
        planned: the firing's local time in words, for S5's stop reason.
        tz: the schedule's zone, to name an owed Transform by its cycle's local time and to
            place a firing in a blackout window.
        firing: the scheduler's firing asking (its id and instant), for P2 and P3.
        only: read only these rows (``HELD_VERDICTS``: is the firing held by an operator?).

    Returns:
        GO, or WAIT/SKIP with the reason and the deciding row, and any runs to stop first.
    """
    cls = exclusivity_of(job)
    if cls is None:
        raise ValueError(f"unknown job '{job}'")
    asking = _Asking(job, state, waiting, tz, firing)
    stops: list[tuple[ActiveRun, str, StopKind]] = []
    for row in rows_for(cls, ask):
        if only is not None and row.id not in only:
            continue
        if row.phase == ("waiting" if waiting is None else "new"):
            continue
        found = FINDERS[row.blocker](asking)
        if not found:
            continue
        texts = [b.text for b in found]
        first = found[0].run
        words = row.words.format(
            run=first.run_id if first is not None else "",
            runs=", ".join(texts),
            job=job,
            planned=planned,
            **dict(found[0].fields),
        )
        if row.outcome is Outcome.STOP:
            if row.kind is None:  # pragma: no cover - the table gives every stop row a kind
                raise ValueError(f"stop row {row.id} has no stop kind")
            stops += [(b.run, words, row.kind) for b in found if isinstance(b.run, ActiveRun)]
            continue
        return Decision(row.outcome, words, row.id, tuple(stops))
    return Decision(Outcome.GO, RELEASED.get((cls, ask), RELEASED_OTHERWISE), None, tuple(stops))
