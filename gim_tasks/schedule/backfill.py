"""Back-fills (SPEC B1), the pure part: a request checked and cut into items (one per day and
step, in the back-fill's order), the words of what each item does, which items start next and
the time left. Reading what needs doing (facts present, checks failing, earlier items) and
carrying the decisions out is ``gim_tasks.runtime.backfills``; whether an item may start now
is the exclusivity gate's (``gate.TABLE``, rows ``B1-*`` and ``B2-pool``).
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from gim_tasks.errors import GimError
from gim_tasks.lifecycle import RunState

STEPS = ("aggregate", "export")
REPROCESS = ("missing", "failed", "all")
ORDERS = ("oldest", "newest")
MAX_PARALLEL = 16
MAX_DAYS = 366
#: What each reprocess mode takes, in the words of `gim backfill create --help` and the page.
MODES = {
    "missing": "days whose aggregates are absent while their facts are held (aggregate); "
    "chunks whose folder is gone from the export directory, found when the item runs (export)",
    "failed": "days with a failing quality check of the step (aggregate-verify; the export's "
    "discard-ratio, hour-rows, manifest-rows) or whose last back-fill item of the step failed",
    "all": "every day of the range",
}
#: The attempts of an item on a transient failure (worker lost, lost connection), unless
#: ``[limits] retries`` gives the back-fill job more (L3; the back-fill retries its items).
ITEM_ATTEMPTS = 3


@dataclass(frozen=True)
class Request:
    first: date
    last: date
    steps: tuple[str, ...]
    reprocess: str = "missing"
    order: str = "oldest"
    max_parallel: int = 1
    reason: str = ""


def _words(values: Iterable[str]) -> str:
    return ", ".join(values)


def parse_steps(text: str | Sequence[str]) -> tuple[str, ...]:
    parts = text.split(",") if isinstance(text, str) else list(text)
    steps = tuple(dict.fromkeys(part.strip() for part in parts if part.strip()))
    if not steps:
        raise GimError(f"--steps is empty; allowed: a comma-separated list of {_words(STEPS)}")
    unknown = [step for step in steps if step not in STEPS]
    if unknown:
        raise GimError(f"--steps: unknown step '{unknown[0]}'; allowed: {_words(STEPS)}")
    return tuple(step for step in STEPS if step in steps)  # aggregate before export


def check(request: Request, today: date) -> Request:
    """The request, or a refusal naming what is wrong and what is allowed."""
    if request.first > request.last:
        raise GimError(f"--from {request.first} is after --to {request.last}")
    if request.last >= today:
        raise GimError(
            f"--to {request.last} is not a past day: the live jobs handle today ({today}) "
            "and later; a back-fill replays days up to yesterday"
        )
    days = (request.last - request.first).days + 1
    if days > MAX_DAYS:
        raise GimError(f"the range holds {days} days; at most {MAX_DAYS} per back-fill")
    steps = parse_steps(request.steps)
    if request.reprocess not in REPROCESS:
        raise GimError(f"--reprocess '{request.reprocess}'; allowed: {_words(REPROCESS)}")
    if request.order not in ORDERS:
        raise GimError(f"--order '{request.order}'; allowed: {_words(ORDERS)}")
    if not 1 <= request.max_parallel <= MAX_PARALLEL:
        raise GimError(f"--max-parallel {request.max_parallel}; allowed: 1 to {MAX_PARALLEL}")
    if not request.reason.strip():
        raise GimError("a reason is required (--reason TEXT): it is shown with the back-fill")
    return Request(
        request.first,
        request.last,
        steps,
        request.reprocess,
        request.order,
        request.max_parallel,
        request.reason.strip(),
    )


def days_of(request: Request) -> list[date]:
    days = [
        request.first + timedelta(days=n) for n in range((request.last - request.first).days + 1)
    ]
    return days if request.order == "oldest" else days[::-1]


@dataclass(frozen=True)
class Item:
    position: int
    day: date
    step: str
    action: str  # what it does, in words


def action_words(step: str, day: date, reprocess: str, chunks: int, levels: str) -> str:
    if step == "aggregate":
        return f"rebuild {levels} of every hierarchy for {day}"
    if reprocess == "missing":
        return f"write the chunks of {day} missing from the export directory (of {chunks})"
    return f"rewrite the {chunks} exported chunk(s) of {day} as a new generation"


def items(
    request: Request,
    selected: Mapping[str, Collection[date]],
    chunks: Mapping[date, int],
    levels: str,
) -> list[Item]:
    """The items of ``request``: per day in its order, its steps (aggregate first), each day
    and step taken when ``selected[step]`` holds the day (what the reprocess mode found)."""
    found: list[Item] = []
    for day in days_of(request):
        for step in request.steps:
            if day in selected.get(step, ()):
                words = action_words(step, day, request.reprocess, chunks.get(day, 0), levels)
                found.append(Item(len(found) + 1, day, step, words))
    return found


def chunks_of_day(
    day: date, tz_name: str, size: int, mark: datetime | None
) -> list[tuple[datetime, datetime]]:
    """The export chunks a day owns: those starting within its local bounds (a chunk across
    midnight belongs to the day it starts on, so two days' items never write one chunk), on
    the export's grid (multiples of ``size`` seconds from the epoch), exported already (ending
    at or before ``mark``)."""
    from gim_tasks.schedule.localtime import zone

    tz = zone(tz_name)
    first = datetime.combine(day, time(0), tz).astimezone(UTC)
    last = datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(UTC)
    epoch = int(first.timestamp())
    start = epoch + (-epoch) % size
    found = []
    while start < last.timestamp():
        begin = datetime.fromtimestamp(start, UTC)
        end = begin + timedelta(seconds=size)
        if mark is None or end > mark:
            break
        found.append((begin, end))
        start += size
    return found


def item_firing(backfill_id: int, step: str, day: date, attempt: int = 1) -> str:
    """``backfill:ID:STEP:DAY``, unique in job_run (S11); attempt k (L3) adds ``#k``."""
    base = f"backfill:{backfill_id}:{step}:{day.isoformat()}"
    return base if attempt == 1 else f"{base}#{attempt}"


@dataclass(frozen=True)
class ItemState:
    """An item as the runtime reads it: its newest run's state, or None before it started."""

    position: int
    step: str
    day: date
    run_state: str | None = None
    retry_pending: bool = False
    attempt: int = 1


ACTIVE = (RunState.SCHEDULED, RunState.RUNNING)


def next_items(states: Sequence[ItemState], max_parallel: int) -> list[ItemState]:
    """The items to try now, in order: attempts owed to transient failures first, then items
    not started, as many as the free places of ``max_parallel``."""
    active = sum(1 for s in states if s.run_state in ACTIVE)
    room = max(max_parallel - active, 0)
    owed = sorted((s for s in states if s.retry_pending), key=lambda s: s.position)
    fresh = sorted((s for s in states if s.run_state is None), key=lambda s: s.position)
    return (owed + fresh)[:room]


def finished(states: Sequence[ItemState]) -> bool:
    """Every item ran to its outcome: none to start, none active, no attempt owed."""
    return all(s.run_state is not None and s.run_state not in ACTIVE for s in states) and not any(
        s.retry_pending for s in states
    )


def estimate_left(
    states: Sequence[ItemState], history: Mapping[str, Sequence[float]], max_parallel: int
) -> float | None:
    """Seconds left: the median of the step's measured items for each item not ended, export
    items spread over ``max_parallel`` (aggregate items write one at a time: the aggregate
    write lock). None while a step left has no history."""
    left = 0.0
    for step in STEPS:
        todo = sum(1 for s in states if s.step == step and (s.run_state in (None, *ACTIVE)))
        if not todo:
            continue
        if not history.get(step):
            return None
        each = statistics.median(history[step])
        left += todo * each / (max_parallel if step == "export" else 1)
    return left
