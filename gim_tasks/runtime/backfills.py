"""Back-fills (SPEC B1): create (or dry-run), list, show, pause, resume, cancel, and the beat's
:func:`advance`, which starts their items.

A back-fill is a ``backfill`` row and its items (``backfill_item``, one per day and step, what
the reprocess mode found when it was created). An item is a run of the back-fill job with
firing id ``backfill:ID:STEP:DAY`` (``#k`` for attempt k): the unique index on firing ids makes
each attempt start once across beat and worker crashes (S11), and ``backfill_item.run_id``
points at its newest attempt. Nothing waits in a queue: each tick the beat asks the exclusivity
gate for the next items of every active back-fill (lowest priority: rows ``B1-*``, ``B2-pool``)
and records a run only when the gate says go, so pausing or cancelling leaves nothing queued;
the gate's words for the first item that may not start are the back-fill's ``waiting``.

Who may do what: operators create, pause, resume and cancel (the API and the page check the
role; the command line is the owner's). Every change is audited (P6) in its transaction.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gim_tasks.db import locks
from gim_tasks.db.mart_tables import exported_through
from gim_tasks.db.tables import backfill, backfill_item, job_run
from gim_tasks.errors import Conflict, GimError, NotFound
from gim_tasks.lifecycle import COMPLETED_STATES, Retry, RunState, StopKind, Trigger
from gim_tasks.monitor import audit
from gim_tasks.options import store
from gim_tasks.runtime import pools, runs
from gim_tasks.schedule import backfill as plan
from gim_tasks.schedule.gate import Ask, gate
from gim_tasks.schedule.jobs import BACKFILL
from gim_tasks.schedule.localtime import wall, zone
from gim_tasks.schedule.state import ActiveRun, PoolHolder

log = logging.getLogger("gim_tasks.runtime.backfills")

#: The aggregate levels an aggregate item rebuilds, in words.
LEVELS_WORDS = "SUBHOUR to YEAR"
#: Fact table whose presence on a day says the day has data (the coverage function's).
FACTS = "interaction_segment_fact"
#: How many measured items of a step the estimate reads.
HISTORY = 30
OFF = "run-scheduler=false: the scheduler starts nothing (S9)"


def _tz(conn: Connection) -> Any:
    from gim_tasks.options.store import load_options

    options = load_options(conn)
    return options, zone(options.text("schedule", "timezone"))


def _d5(conn: Connection, options: Any, request: plan.Request, now: datetime, tz: Any) -> None:
    """D5: a day whose facts (or the aggregates a step rebuilds from) were purged is refused
    whole, up front, naming the retention option; nothing is recorded."""
    from gim_tasks.aggregate.params import Reaggregation
    from gim_tasks.aggregate.registry import HIERARCHIES
    from gim_tasks.aggregate.retention import load_holdings
    from gim_tasks.aggregate.safety import refusal

    holdings = load_holdings(conn, options, now)
    asked = f"back-fill {request.first} to {request.last}"
    whole = Reaggregation(
        tuple(h.name for h in HIERARCHIES), "SUBHOUR", None, request.first, request.last
    )
    loss = "replaying them would empty their aggregates and export chunks"
    why = refusal(whole, holdings, tz, wall(now, tz).date(), asked=asked, loss=loss)
    if why is not None:
        raise GimError(why)


def _selected(
    conn: Connection, request: plan.Request, days: list[date], tz_name: str
) -> dict[str, set[date]]:
    """Per step, the days the reprocess mode takes."""
    if request.reprocess == "all":
        return {step: set(days) for step in request.steps}
    selected: dict[str, set[date]] = {}
    failed_items = {
        (row.step, row.day)
        for row in conn.execute(
            sa.text(
                "SELECT DISTINCT ON (i.step, i.day) i.step, i.day, r.state, r.retry "
                "FROM backfill_item i JOIN job_run r ON r.id = i.run_id "
                "WHERE i.day BETWEEN :a AND :b ORDER BY i.step, i.day, r.id DESC"
            ),
            {"a": request.first, "b": request.last},
        )
        if row.state not in (*COMPLETED_STATES, RunState.RUNNING, RunState.SCHEDULED)
        and row.retry != Retry.PENDING
    }
    if request.reprocess == "failed":
        checks = conn.execute(
            sa.text(
                "SELECT day, name FROM quality_check WHERE day BETWEEN :a AND :b AND NOT passed "
                "AND overridden_at IS NULL"
            ),
            {"a": request.first, "b": request.last},
        ).all()
        for step in request.steps:
            names = (
                ("aggregate-verify",)
                if step == "aggregate"
                else ("discard-ratio", "hour-rows", "manifest-rows")
            )
            selected[step] = {row.day for row in checks if row.name in names} | {
                day for s, day in failed_items if s == step
            }
        return selected
    # missing: aggregates absent on a day whose facts are there (the coverage function: an
    # index probe per day and table); export chunks are looked for by the item itself.
    coverage = conn.execute(
        sa.text("SELECT gim_day_coverage(CAST(:days AS date[]), :tz)"),
        {"days": [d.isoformat() for d in days], "tz": tz_name},
    ).scalar_one()
    present = {table: {date.fromisoformat(d) for d in on} for table, on in coverage.items()}
    with_facts = present.get(FACTS, set())
    levels = [
        t
        for t in present
        if t.startswith("agg_") and t.rsplit("_", 1)[1] in ("subhour", "hour", "day")
    ]
    for step in request.steps:
        if step == "export":
            selected[step] = set(with_facts)
        else:
            selected[step] = {
                day
                for day in with_facts
                if not levels or any(day not in present[table] for table in levels)
            } | {day for s, day in failed_items if s == step}
    return selected


def _chunks_per_day(
    conn: Connection, options: Any, days: list[date], tz_name: str
) -> dict[date, int]:
    """How many exported chunks start on each day (at or before the export's mark)."""
    mark = exported_through(conn)
    size = int(options.get("gim-export", "chunk-size-seconds"))
    return {day: len(plan.chunks_of_day(day, tz_name, size, mark)) for day in days}


def history(conn: Connection) -> dict[str, list[float]]:
    """Seconds of the last completed items of each step (the estimates)."""
    found: dict[str, list[float]] = {}
    for step in plan.STEPS:
        found[step] = [
            float(seconds)
            for seconds in conn.execute(
                sa.text(
                    "SELECT extract(epoch FROM ended_at - started_at) FROM job_run "
                    "WHERE job = :job AND trigger = 'backfill' AND params->>'step' = :step "
                    "AND state = ANY(:done) AND started_at IS NOT NULL "
                    "ORDER BY ended_at DESC LIMIT :n"
                ),
                {"job": BACKFILL, "step": step, "done": list(COMPLETED_STATES), "n": HISTORY},
            ).scalars()
        ]
    return found


def create(
    engine: Engine,
    request: plan.Request,
    actor: str,
    dry_run: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """B1: check the request (D5 included), find its items; record them unless ``dry_run``.
    Returns the back-fill as :func:`show` does (``id`` None for a dry run)."""
    now = now or datetime.now(UTC)
    with engine.begin() as conn:
        options, tz = _tz(conn)
        request = plan.check(request, wall(now, tz).date())
        _d5(conn, options, request, now, tz)
        days = plan.days_of(request)
        tz_name = options.text("schedule", "timezone")
        selected = _selected(conn, request, days, tz_name)
        chunks = _chunks_per_day(conn, options, days, tz_name) if "export" in request.steps else {}
        found = plan.items(request, selected, chunks, LEVELS_WORDS)
        measured = history(conn)
        states = [plan.ItemState(i.position, i.step, i.day) for i in found]
        result: dict[str, Any] = {
            "id": None,
            "dry_run": dry_run,
            "from": request.first.isoformat(),
            "to": request.last.isoformat(),
            "steps": list(request.steps),
            "reprocess": request.reprocess,
            "order": request.order,
            "max_parallel": request.max_parallel,
            "reason": request.reason,
            "state": "dry-run" if dry_run else "active",
            "items": [_item_dict(i.position, i.day, i.step, i.action) for i in found],
            "estimate_seconds": plan.estimate_left(states, measured, request.max_parallel),
        }
        if dry_run:
            return result
        if not found:
            raise GimError(
                f"nothing to replay: reprocess={request.reprocess} finds no day of "
                f"{request.first} to {request.last} for {', '.join(request.steps)} "
                f"({plan.MODES[request.reprocess]}); --reprocess all replays every day"
            )
        backfill_id = conn.execute(
            sa.insert(backfill)
            .values(
                from_day=request.first,
                to_day=request.last,
                steps=list(request.steps),
                reprocess=request.reprocess,
                item_order=request.order,
                max_parallel=request.max_parallel,
                reason=request.reason,
                created_by=actor,
            )
            .returning(backfill.c.id)
        ).scalar_one()
        conn.execute(
            sa.insert(backfill_item),
            [
                {
                    "backfill_id": backfill_id,
                    "step": i.step,
                    "day": i.day,
                    "position": i.position,
                    "action": i.action,
                }
                for i in found
            ],
        )
        audit.record(
            conn,
            audit.Action.BACKFILL_CREATE,
            f"backfill {backfill_id}",
            actor,
            reason=request.reason,
            after={k: v for k, v in result.items() if k not in ("items", "dry_run", "state")}
            | {"items": len(found)},
        )
    result |= {"id": int(backfill_id), "state": "active"}
    return result


def _item_dict(position: int, day: date, step: str, action: str, **more: Any) -> dict[str, Any]:
    return {"position": position, "day": day.isoformat(), "step": step, "action": action} | more


def _items(conn: Connection, backfill_id: int) -> list[sa.Row[Any]]:
    return list(
        conn.execute(
            sa.select(
                backfill_item.c.position,
                backfill_item.c.day,
                backfill_item.c.step,
                backfill_item.c.action,
                backfill_item.c.run_id,
                job_run.c.state,
                job_run.c.retry,
                job_run.c.attempt,
                job_run.c.max_attempts,
                job_run.c.started_at,
                job_run.c.ended_at,
                job_run.c.error,
                job_run.c.reason,
                job_run.c.params,
                job_run.c.firing_id,
            )
            .select_from(backfill_item.outerjoin(job_run, job_run.c.id == backfill_item.c.run_id))
            .where(backfill_item.c.backfill_id == backfill_id)
            .order_by(backfill_item.c.position)
        ).all()
    )


def _state_of(row: sa.Row[Any]) -> plan.ItemState:
    return plan.ItemState(
        row.position,
        row.step,
        row.day,
        row.state,
        row.retry == Retry.PENDING,
        row.attempt or 1,
    )


def _status(row: sa.Row[Any]) -> str:
    """An item in one word: pending, running, done, retrying, or its run's end state."""
    if row.state is None:
        return "pending"
    if row.retry == Retry.PENDING:
        return "retrying"
    if row.state in COMPLETED_STATES:
        return "done"
    return str(row.state).lower()


def show(engine: Engine, backfill_id: int) -> dict[str, Any]:
    """A back-fill with its items (run, attempt, status), progress per step and time left."""
    with engine.connect() as conn:
        head = conn.execute(sa.select(backfill).where(backfill.c.id == backfill_id)).one_or_none()
        if head is None:
            raise NotFound(f"back-fill {backfill_id} does not exist (gim backfill list)")
        rows = _items(conn, backfill_id)
        measured = history(conn)
    return _summary(head, rows, measured, with_items=True)


def _summary(
    head: sa.Row[Any], rows: list[sa.Row[Any]], measured: dict[str, list[float]], with_items: bool
) -> dict[str, Any]:
    states = [_state_of(row) for row in rows]
    progress: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = progress.setdefault(row.step, {"items": 0})
        counts["items"] += 1
        status = _status(row)
        counts[status] = counts.get(status, 0) + 1
    left = (
        plan.estimate_left(states, measured, head.max_parallel)
        if head.state in ("active", "paused")
        else 0.0
    )
    result: dict[str, Any] = {
        "id": int(head.id),
        "from": head.from_day.isoformat(),
        "to": head.to_day.isoformat(),
        "steps": list(head.steps),
        "reprocess": head.reprocess,
        "order": head.item_order,
        "max_parallel": head.max_parallel,
        "reason": head.reason,
        "state": head.state,
        "created_by": head.created_by,
        "created_at": head.created_at.isoformat(),
        "ended_at": head.ended_at.isoformat() if head.ended_at else None,
        "waiting": head.waiting if head.state == "active" else None,
        "progress": progress,
        "done": sum(1 for row in rows if _status(row) == "done"),
        "total": len(rows),
        "estimate_seconds": left,
    }
    if with_items:
        result["items"] = [
            _item_dict(
                row.position,
                row.day,
                row.step,
                row.action,
                status=_status(row),
                run_id=row.run_id,
                attempt=row.attempt,
                started_at=row.started_at.isoformat() if row.started_at else None,
                ended_at=row.ended_at.isoformat() if row.ended_at else None,
                seconds=(
                    round((row.ended_at - row.started_at).total_seconds(), 1)
                    if row.started_at and row.ended_at
                    else None
                ),
                error=row.error,
            )
            for row in rows
        ]
    return result


def listing(engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    """Back-fills, newest first, with their progress (no items)."""
    with engine.connect() as conn:
        heads = conn.execute(sa.select(backfill).order_by(backfill.c.id.desc()).limit(limit)).all()
        measured = history(conn)
        return [_summary(head, _items(conn, head.id), measured, with_items=False) for head in heads]


#: What each operator action allows, and the state it leads to.
CHANGES = {
    "pause": (("active",), "paused", audit.Action.BACKFILL_PAUSE),
    "resume": (("paused",), "active", audit.Action.BACKFILL_RESUME),
    "cancel": (("active", "paused"), "cancelled", audit.Action.BACKFILL_CANCEL),
}


def change(engine: Engine, backfill_id: int, action: str, actor: str) -> str:
    """Pause (no new item starts; running ones finish), resume (goes on where it stopped) or
    cancel (no new item; running ones are asked to stop at their next commit, stop kind
    ``operator``; sent ones not yet started are cancelled), audited. The back-fill row is
    locked FOR UPDATE, as the beat's :func:`advance` locks it before starting items: a change
    and a start never interleave."""
    if action not in CHANGES:
        raise GimError(f"unknown action '{action}'; allowed: {', '.join(CHANGES)}")
    allowed, after, audited = CHANGES[action]
    with engine.begin() as conn:
        head = conn.execute(
            sa.select(backfill.c.state).where(backfill.c.id == backfill_id).with_for_update()
        ).one_or_none()
        if head is None:
            raise NotFound(f"back-fill {backfill_id} does not exist (gim backfill list)")
        if head.state not in allowed:
            raise Conflict(
                f"back-fill {backfill_id} is {head.state}; {action} applies to a back-fill "
                f"that is {' or '.join(allowed)}"
            )
        conn.execute(
            sa.update(backfill)
            .where(backfill.c.id == backfill_id)
            .values(
                state=after,
                waiting=None,
                ended_at=sa.func.now() if after == "cancelled" else None,
            )
        )
        stopped = []
        if action == "cancel":
            for row in _items(conn, backfill_id):
                if row.run_id is None:
                    continue
                if row.state == RunState.RUNNING and runs.request_stop(
                    conn,
                    row.run_id,
                    f"back-fill {backfill_id} cancelled by {actor}",
                    actor,
                    StopKind.OPERATOR,
                ):
                    stopped.append(row.run_id)
                elif row.state == RunState.SCHEDULED and runs.cancel(conn, row.run_id, actor):
                    stopped.append(row.run_id)
        audit.record(
            conn,
            audited,
            f"backfill {backfill_id}",
            actor,
            before={"state": head.state},
            after={"state": after, "stopped_runs": stopped},
        )
    told = f"back-fill {backfill_id}: {after}"
    if stopped:
        told += f"; stop asked of run(s) {', '.join(map(str, stopped))}"
    return told


def advance(engine: Engine, app: Any, now: datetime) -> list[int]:
    """Start the next items of every active back-fill that the gate lets through (oldest
    back-fill first), retry items that failed transiently, end the back-fills whose items all
    ended, and settle the owed attempts of cancelled ones. The beat calls it each tick, and a
    worker as soon as an item of its ends (the next item need not wait for a tick): the same
    decision under the same lock. Cheap when no back-fill is live: one query on
    ``ix_backfill_live``. Returns the runs started."""
    from gim_tasks.runtime.dispatch import send
    from gim_tasks.runtime.limits import _final, mark_retried
    from gim_tasks.runtime.state import load_state

    with engine.connect() as conn:
        live = conn.execute(
            sa.select(backfill.c.id, backfill.c.state)
            .where(backfill.c.state.in_(("active", "paused")))
            .order_by(backfill.c.id)
        ).all()
        owed = conn.execute(
            sa.select(job_run.c.id, backfill.c.id.label("backfill"))
            .select_from(
                job_run.join(backfill_item, backfill_item.c.run_id == job_run.c.id).join(
                    backfill, backfill.c.id == backfill_item.c.backfill_id
                )
            )
            .where(
                job_run.c.retry == Retry.PENDING,
                job_run.c.trigger == Trigger.BACKFILL,
                backfill.c.state == "cancelled",
            )
        ).all()
    for row in owed:  # a cancelled back-fill's failed item is its outcome
        _final(engine, row.id, f"back-fill {row.backfill} was cancelled")
    started: list[int] = []
    if not any(head.state == "active" for head in live):
        return started
    with engine.connect() as conn:
        schedule = store.load_options(conn).schedule()
    tz = zone(schedule.timezone)
    if not schedule.run_scheduler:  # S9: the scheduler starts nothing, items included
        with engine.begin() as conn:
            conn.execute(
                sa.update(backfill)
                .where(backfill.c.state == "active", backfill.c.waiting.is_distinct_from(OFF))
                .values(waiting=OFF)
            )
        return started
    for head in live:
        if head.state != "active":
            continue
        to_send: list[int] = []
        with engine.begin() as conn:
            locks.hold(conn, locks.ADMISSION)
            current = conn.execute(
                sa.select(backfill)
                .where(backfill.c.id == head.id, backfill.c.state == "active")
                .with_for_update()
            ).one_or_none()
            if current is None:  # paused or cancelled since
                continue
            rows = _items(conn, head.id)
            states = [_state_of(row) for row in rows]
            if plan.finished(states):
                conn.execute(
                    sa.update(backfill)
                    .where(backfill.c.id == head.id)
                    .values(state="done", ended_at=sa.func.now(), waiting=None)
                )
                log.info("back-fill %s: every item ended", head.id)
                continue
            todo = plan.next_items(states, current.max_parallel)
            if not todo:
                continue
            state = load_state(conn, {}, now)
            by_position = {row.position: row for row in rows}
            waiting = None
            for item in todo:
                row = by_position[item.position]
                attempt = item.attempt + 1 if item.retry_pending else 1
                fid = plan.item_firing(head.id, item.step, item.day, attempt)
                decision = gate(BACKFILL, Ask.SCHEDULER, state, tz=tz, firing=(fid, now))
                if not decision.go:
                    waiting = decision.reason
                    break
                values: dict[str, Any] = {
                    "job": BACKFILL,
                    "trigger": Trigger.BACKFILL,
                    "actor": current.created_by,
                    "state": RunState.SCHEDULED,
                    "dispatched_at": sa.func.now(),
                    "firing_id": fid,  # no planned_at: an item has no slot in the plan
                    "params": {
                        "backfill": head.id,
                        "step": item.step,
                        "day": item.day.isoformat(),
                        "reprocess": current.reprocess,
                    },
                    "reason": f"back-fill {head.id}: item {item.position} of {len(rows)}, "
                    f"{item.step} {item.day} (B1)",
                }
                if item.retry_pending:
                    values |= {
                        "retry_of": row.run_id,
                        "attempt": attempt,
                        "max_attempts": row.max_attempts,
                    }
                else:
                    values["max_attempts"] = max(
                        runs.allowed_attempts(conn, BACKFILL), plan.ITEM_ATTEMPTS
                    )
                run_id = runs.record(conn, values)  # S11: the firing id is unique
                if run_id is None:  # another beat started this attempt: point at it
                    run_id = conn.execute(
                        sa.select(job_run.c.id).where(job_run.c.firing_id == fid)
                    ).scalar_one()
                else:
                    pools.take(conn, run_id, BACKFILL, state.pools)  # B2, under the lock
                    to_send.append(run_id)
                    if item.retry_pending:
                        mark_retried(conn, row.run_id, run_id, None)
                conn.execute(
                    sa.update(backfill_item)
                    .where(
                        backfill_item.c.backfill_id == head.id,
                        backfill_item.c.step == item.step,
                        backfill_item.c.day == item.day,
                    )
                    .values(run_id=run_id)
                )
                weight = state.pools.weights.get(BACKFILL, 0)
                state = replace(
                    state,
                    running=(
                        *state.running,
                        ActiveRun(run_id, BACKFILL, "backfill", firing_id=fid),
                    ),
                    pools=replace(
                        state.pools,
                        holders=(*state.pools.holders, PoolHolder(run_id, BACKFILL, weight)),
                    )
                    if weight
                    else state.pools,
                )
            conn.execute(
                sa.update(backfill)
                .where(backfill.c.id == head.id, backfill.c.waiting.is_distinct_from(waiting))
                .values(waiting=waiting)
            )
        for run_id in to_send:  # after commit: the worker must find the row
            send(app, BACKFILL, run_id)
            started.append(run_id)
    return started
