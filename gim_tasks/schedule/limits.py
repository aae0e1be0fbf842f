"""Runaway and transient (SPEC L1-L3), decided purely: runs + limits + history + plan + clock
-> findings. The beat carries them out (``runtime/limits.py``); these functions read no
database and no clock of their own, so every case is tested at any instant.

- L1 :func:`judge`: a run past its job's ``max-runtime`` is ``over`` (warn: an incident;
  stop: a stop request, kind ``time-limit``).
- L2 :func:`judge`: a run past ``slow-factor`` x the p95 of its job's last 30 successes (with
  at least :data:`MIN_SUCCESSES`) is ``slow``; a running ETL cycle or export whose predicted
  end (from its progress, else its job's p95) reaches its job's next slot or the next
  maintenance start, when that slot is within the warning time, is ``collision``.
- L3 :func:`retry_plan`: when attempt k+1 of a transiently failed firing may start, or why
  it may not (its next slot, maintenance).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from gim_tasks.schedule.jobs import AGGREGATE, BY_NAME, EXTRACT

#: L2: a job's p95 is judged only from this many successful runs on.
MIN_SUCCESSES = 10
#: L2: the classes whose runs are predicted against their next slot: an ETL cycle (Extract,
#: then Transform, whose next slot is Extract's) and an export.
PREDICTED = ("extract", "transform", "export")


def slot_job(job: str) -> str:
    """Whose next slot a run of ``job`` must end before: Transform's is its Extract's."""
    return EXTRACT if BY_NAME[job].exclusivity == "transform" else job


@dataclass(frozen=True)
class Limit:
    job: str
    seconds: int
    action: str  # warn | stop


@dataclass(frozen=True)
class History:
    """A job's last successful runs (L2): how many, and the p95 of their durations."""

    successes: int
    p95_seconds: float

    @property
    def judged(self) -> bool:
        return self.successes >= MIN_SUCCESSES


@dataclass(frozen=True)
class RunningRun:
    run_id: int
    job: str
    started_at: datetime
    stop_requested: bool = False
    #: (done, total) from the run's progress, when it reports one.
    progress: tuple[float, float] | None = None


@dataclass(frozen=True)
class Finding:
    kind: str  # over | slow | collision
    run: RunningRun
    detail: str
    action: str = ""  # over: warn | stop


def _span(seconds: float) -> str:
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def predicted_end(run: RunningRun, history: History | None, now: datetime) -> datetime | None:
    """When ``run`` should end: at its current rate when it reports progress (done of total),
    else after its job's p95 (only once judged). None when nothing says."""
    elapsed = (now - run.started_at).total_seconds()
    if run.progress is not None:
        done, total = run.progress
        if done > 0 and total >= done:
            return run.started_at + timedelta(seconds=elapsed * total / done)
    if history is not None and history.judged:
        return run.started_at + timedelta(seconds=max(history.p95_seconds, elapsed))
    return None


def judge(
    running: Iterable[RunningRun],
    limits: Mapping[str, Limit],
    history: Mapping[str, History],
    slow_factor: float,
    next_slot: Mapping[str, datetime | None],
    maintenance_at: datetime | None,
    warn_ahead: timedelta,
    now: datetime,
) -> list[Finding]:
    """Every finding about the running runs now (idempotent: the caller opens an incident
    once per run and requests a stop once)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    found: list[Finding] = []
    for run in running:
        if run.job == AGGREGATE:  # continuous: its window is its limit (S7)
            continue
        elapsed = (now - run.started_at).total_seconds()
        limit = limits.get(run.job)
        if limit is not None and elapsed >= limit.seconds:
            found.append(
                Finding(
                    "over",
                    run,
                    f"run {run.run_id} has run {_span(elapsed)}, past its limit of "
                    f"{_span(limit.seconds)} ([limits] max-runtime, {limit.action}) (L1)",
                    limit.action,
                )
            )
        known = history.get(run.job)
        if known is not None and known.judged and elapsed > slow_factor * known.p95_seconds:
            found.append(
                Finding(
                    "slow",
                    run,
                    f"run {run.run_id} has run {_span(elapsed)}, more than {slow_factor:g} x the "
                    f"p95 of its last {known.successes} successes ({_span(known.p95_seconds)}) "
                    "(L2)",
                )
            )
        if BY_NAME[run.job].exclusivity in PREDICTED:
            end = predicted_end(run, known, now)
            owner = slot_job(run.job)
            slots = [
                (at, words)
                for at, words in (
                    (next_slot.get(owner), f"the next slot of {owner}"),
                    (maintenance_at, "the next maintenance start"),
                )
                if at is not None and at > now
            ]
            for at, words in sorted(slots, key=lambda s: s[0]):
                if end is not None and end > at and at - now <= warn_ahead:
                    found.append(
                        Finding(
                            "collision",
                            run,
                            f"run {run.run_id} is predicted to end at {end:%H:%M:%S %Z}, after "
                            f"{words} at {at:%H:%M:%S %Z} (L2)",
                        )
                    )
                    break
    return found


@dataclass(frozen=True)
class RetryPlan:
    at: datetime | None  # when attempt k+1 may start; None: no retry
    reason: str  # why not, or what is planned


def retry_plan(
    job: str,
    attempt: int,
    max_attempts: int,
    ended_at: datetime,
    delay_seconds: float,
    next_slot: datetime | None,
    maintenance_at: datetime | None,
    expected_seconds: float,
) -> RetryPlan:
    """L3: attempt ``attempt`` failed transiently at ``ended_at``. Attempt k+1 waits
    ``delay x 2^(k-1)``; it is not made when it would start at or after the job's next
    planned slot, or when maintenance starts before it would end (its expected duration: the
    job's p95, else nothing)."""
    if attempt >= max_attempts:
        return RetryPlan(None, f"no attempt left ({attempt} of {max_attempts})")
    at = ended_at + timedelta(seconds=delay_seconds * 2 ** (attempt - 1))
    if next_slot is not None and at >= next_slot:
        return RetryPlan(
            None,
            f"retry would overlap the next slot of {job} at {next_slot:%Y-%m-%d %H:%M %Z} (L3)",
        )
    is_maintenance = BY_NAME[job].exclusivity == "maintenance"
    if (
        maintenance_at is not None
        and not is_maintenance
        and maintenance_at <= at + timedelta(seconds=expected_seconds)
    ):
        return RetryPlan(
            None, f"retry would overlap maintenance at {maintenance_at:%Y-%m-%d %H:%M %Z} (L3)"
        )
    return RetryPlan(at, f"attempt {attempt + 1} of {max_attempts} at {at:%H:%M:%S %Z} (L3)")
