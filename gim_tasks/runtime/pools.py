"""Database pools (SPEC B2): a named number of slots that the heavy jobs share, each job
taking its weight, granted in priority order (ETL > maintenance > aggregation > export >
statistics > back-fill) by the exclusivity gate (``gate.TABLE`` row ``B2-pool``).

A slot is a ``pool_slot`` row, inserted in the transaction that admits its run, under the
admission lock (:func:`take`: the beat's launches and releases, every manual admission, the
back-fill's items), so two admissions never share the last slot. The row carries the run's
fencing token once the run is claimed, and goes in the same transaction as the run's end,
whichever path ends it (trigger ``pool_slot_follow``, migration 0024): finish, the R2 sweep of
a dead or paused worker, a cancel. No slot outlives its run (Prefect's leaked slots,
prefect#17415, are what this avoids: there is no counter to forget to give back).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from gim_tasks.db.tables import job_run, option_value, pool_slot
from gim_tasks.errors import GimError
from gim_tasks.lifecycle import RunState
from gim_tasks.schedule.jobs import JOBS
from gim_tasks.schedule.state import PoolHolder, Pools

POOL = "heavy-db"


def config(conn: Connection) -> Pools:
    """The pool's size and weights in force (one indexed read of two options); a bad stored
    value, which the configuration check reports, counts as its default."""
    from gim_tasks.options.registry import lookup

    stored: dict[str, str] = {
        row.name: row.value
        for row in conn.execute(
            sa.select(option_value.c.name, option_value.c.value).where(
                option_value.c.section == "pools"
            )
        )
    }
    values: dict[str, Any] = {}
    for name in (POOL, "weights"):
        spec = lookup("pools", name)
        try:
            values[name] = spec.parse(stored.get(name, spec.default))
        except (GimError, ValueError):
            values[name] = spec.parse(spec.default)
    weights = {spec.name: spec.pool_weight for spec in JOBS if spec.pool_weight}
    weights |= dict(values["weights"])
    return Pools(POOL, int(values[POOL]), {job: w for job, w in weights.items() if w})


def load(conn: Connection) -> Pools:
    """The pool with its holders (every ``pool_slot`` row, oldest first)."""
    pools = config(conn)
    rows = conn.execute(
        sa.select(pool_slot.c.run_id, job_run.c.job, pool_slot.c.weight)
        .join(job_run, job_run.c.id == pool_slot.c.run_id)
        .where(pool_slot.c.pool == pools.name)
        .order_by(pool_slot.c.taken_at, pool_slot.c.run_id)
    ).all()
    holders = tuple(PoolHolder(int(r.run_id), r.job, int(r.weight)) for r in rows)
    return Pools(pools.name, pools.capacity, pools.weights, holders)


def take(conn: Connection, run_id: int, job: str, pools: Pools | None = None) -> bool:
    """The admitted run's slots, in the caller's transaction (under the admission lock, after
    the gate said go). False when the job has no weight in the pool."""
    pools = pools if pools is not None else config(conn)
    weight = pools.weights.get(job, 0)
    if not weight:
        return False
    conn.execute(
        insert(pool_slot)
        .values(run_id=run_id, pool=pools.name, weight=weight)
        .on_conflict_do_nothing()
    )
    return True


def usage(conn: Connection) -> dict[str, int]:
    """``/metrics``' ``gim_pool_slots{pool,state}``: slots held, free, and the weights of the
    runs waiting as Scheduled for one."""
    pools = load(conn)
    waiting = conn.execute(
        sa.select(job_run.c.job).where(
            job_run.c.state == RunState.SCHEDULED,
            job_run.c.dispatched_at.is_(None),
            job_run.c.job.in_(list(pools.weights)),
        )
    ).scalars()
    return {
        "held": pools.held,
        "free": max(pools.capacity - pools.held, 0),
        "waiting": sum(pools.weights.get(job, 0) for job in waiting),
    }
