"""What the ETL and the aggregation are doing: one implementation for ``gim etl status``,
``gim aggregate status``, the web pages ``/etl`` and ``/aggregation`` and ``GET
/api/etl/status``, ``GET /api/aggregate/status`` (GIM Manager's ETL status view; issue 18
item 5).

Counts over staging, facts and aggregates come from the SECURITY DEFINER functions of migration
0013 (``gim_etl_counts``, ``gim_aggregate_freshness``): the web role reads no data row, only
these numbers. Marks, runs and the aggregation queue are metadata it may read.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from gim_tasks.options import store
from gim_tasks.schedule.jobs import AGGREGATE, EXTRACT, TRANSFORM

#: Extract and Transform runs shown as "recent cycles".
CYCLE_JOBS = (EXTRACT, TRANSFORM)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_key(key: int | None) -> str | None:
    """A ``date_time_key`` (UTC epoch seconds of a 15-minute interval) as ISO text."""
    return datetime.fromtimestamp(key, UTC).isoformat() if key is not None else None


def etl_status(engine: sa.Engine) -> dict[str, Any]:
    """Per IDB and table: extraction marks, rows waiting for Transform; per IDB segment facts
    and discards; the lag of the newest fact behind the newest staged segment; fact row counts;
    the last ten Extract/Transform runs with their durations."""
    with engine.connect() as conn:
        counts = conn.execute(sa.text("SELECT gim_etl_counts()")).scalar_one()
        names: dict[int, str] = dict(
            conn.execute(sa.text("SELECT idb_id, name FROM idb_source")).tuples().all()
        )
        marks = conn.execute(
            sa.text(
                "SELECT idb_id, table_name, done_snapshot, pending_snapshot, rows_extracted, "
                "updated_at FROM extract_mark ORDER BY idb_id, table_name"
            )
        ).all()
        cycles = conn.execute(
            sa.text(
                "SELECT id, job, state, started_at, ended_at FROM job_run WHERE job = ANY(:jobs) "
                "AND started_at IS NOT NULL AND ended_at IS NOT NULL ORDER BY id DESC LIMIT 10"
            ),
            {"jobs": list(CYCLE_JOBS)},
        ).all()
        options = store.load_options(conn)
        # O4; the age is left out (it changes between two readers: the data time is the fact).
        freshness = [
            {k: v for k, v in item.items() if k != "age_seconds"}
            for item in data_freshness(conn, datetime.now(UTC), options)
        ]
    pending_rows = counts["pending"]
    by_table: dict[str, int] = {}
    for row in pending_rows:
        by_table[row["table"]] = by_table.get(row["table"], 0) + row["rows"]
    newest_fact = parse_iso(counts["newest_fact"])
    newest_staged = parse_iso(counts["newest_staged"])
    lag = None
    if newest_staged is not None:
        lag = max(0.0, (newest_staged - (newest_fact or newest_staged)).total_seconds())
    return {
        "idbs": [
            {
                "idb": name,
                "tables": len(mine),
                "rows_extracted": sum(m.rows_extracted for m in mine),
                "in_progress": any(m.pending_snapshot is not None for m in mine),
                "last_extract": _iso(max(m.updated_at for m in mine)) if mine else None,
                "pending_transform": sum(r["rows"] for r in pending_rows if r["idb_id"] == idb_id),
                "segment_facts": counts["segment_facts"].get(str(idb_id), 0),
                "segment_discards": counts["segment_discards"].get(str(idb_id), 0),
            }
            for idb_id, name in sorted(names.items())
            for mine in [[m for m in marks if m.idb_id == idb_id]]
        ],
        "marks": [
            {
                "idb": names.get(m.idb_id, str(m.idb_id)),
                "table": m.table_name,
                "snapshot": m.done_snapshot,
                "in_progress": m.pending_snapshot is not None,
                "rows_extracted": m.rows_extracted,
                "updated_at": m.updated_at.isoformat(),
                "pending_transform": next(
                    (
                        r["rows"]
                        for r in pending_rows
                        if r["idb_id"] == m.idb_id and r["table"] == m.table_name
                    ),
                    0,
                ),
            }
            for m in marks
        ],
        "pending_transform": sum(by_table.values()),
        "pending_by_table": by_table,
        "lag_seconds": lag,
        "newest_fact": _iso(newest_fact),
        "facts": dict(sorted(counts["facts"].items())),
        "last_runs": [
            {
                "run_id": c.id,
                "job": c.job,
                "state": c.state,
                "started_at": c.started_at.isoformat(),
                "seconds": round((c.ended_at - c.started_at).total_seconds(), 3),
            }
            for c in cycles
        ],
        "freshness": freshness,
    }


def aggregate_status(engine: sa.Engine) -> dict[str, Any]:
    """Pending 15-minute intervals (and the oldest), queued re-aggregation requests, the last
    batch's duration, recent aggregation runs, and per hierarchy the newest aggregated
    interval (freshness)."""
    from gim_tasks.aggregate.registry import HIERARCHIES

    with engine.connect() as conn:
        pending, oldest = conn.execute(
            sa.text("SELECT count(*), min(date_time_key) FROM agg_pending")
        ).one()
        requests = conn.execute(
            sa.text(
                "SELECT id, params, requested_by, requested_at, run_id FROM agg_request "
                "WHERE done_at IS NULL ORDER BY id"
            )
        ).all()
        last = conn.execute(
            sa.text(
                "SELECT summary FROM job_run WHERE job = :job AND summary ? "
                "'last_batch_seconds' ORDER BY id DESC LIMIT 1"
            ),
            {"job": AGGREGATE},
        ).scalar_one_or_none()
        runs = conn.execute(
            sa.text(
                "SELECT id, state, stop_kind, started_at, ended_at FROM job_run "
                "WHERE job = :job AND started_at IS NOT NULL "
                "ORDER BY id DESC LIMIT 10"
            ),
            {"job": AGGREGATE},
        ).all()
        newest = conn.execute(sa.text("SELECT gim_aggregate_freshness()")).scalar_one()
    return {
        "pending_intervals": pending,
        "oldest_pending": _from_key(oldest),
        "queued_requests": len(requests),
        "requests": [
            {
                "id": r.id,
                "params": r.params,
                "requested_by": r.requested_by,
                "requested_at": r.requested_at.isoformat(),
                "run_id": r.run_id,
            }
            for r in requests
        ],
        "last_pass_seconds": (last or {}).get("last_batch_seconds"),
        "last_runs": [
            {
                "run_id": r.id,
                "state": r.state,
                "stop_kind": r.stop_kind,
                "started_at": r.started_at.isoformat(),
                "ended_at": _iso(r.ended_at),
            }
            for r in runs
        ],
        "freshness": {h.name: _from_key(newest.get(h.table("SUBHOUR"))) for h in HIERARCHIES},
    }


def parse_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


#: Nominal length of an aggregate level's interval: a level's data reaches the end of its
#: newest interval at most (and never beyond the newest 15-minute interval).
LEVEL_SPAN = {
    "SUBHOUR": timedelta(minutes=15),
    "HOUR": timedelta(hours=1),
    "DAY": timedelta(days=1),
    "MONTH": timedelta(days=28),
    "QUARTER": timedelta(days=90),
    "YEAR": timedelta(days=365),
}


def slo_of(slo: dict[str, int], category: str, table: str) -> int | None:
    """The SLO in minutes of a table or level: its own entry, else its category's; 0 or none
    means it is not judged."""
    minutes = slo.get(table, slo.get(category))
    return minutes or None


def data_freshness(conn: sa.Connection, now: datetime, options: Any) -> list[dict[str, Any]]:
    """SPEC O4: per fact table (category ETL) and aggregate level (category Aggregation), the
    data time of the newest row (a fact's start; a level's interval end, capped at the newest
    15-minute interval's end), its age at ``now`` and whether it is beyond its SLO
    (``[monitor] freshness-slo-minutes``). A table without rows has no data time and is not
    judged."""
    from gim_tasks.schedule.localtime import resolve, zone

    slo_minutes = options.get("monitor", "freshness-slo-minutes")
    tz = zone(options.schedule().timezone)
    newest = conn.execute(sa.text("SELECT gim_data_freshness()")).scalar_one()
    items: list[tuple[str, str, datetime | None]] = []
    for table, seconds in newest["facts"].items():
        at = datetime.fromtimestamp(seconds, UTC) if seconds is not None else None
        items.append(("ETL", table, at))
    levels = newest["levels"]
    subhour_end = None
    if levels.get("SUBHOUR") is not None:
        subhour_end = datetime.fromtimestamp(levels["SUBHOUR"], UTC) + LEVEL_SPAN["SUBHOUR"]
    for level, span in LEVEL_SPAN.items():
        value = levels.get(level)
        end: datetime | None = None
        if level == "SUBHOUR":
            end = subhour_end
        elif value is not None:
            # A local bucket start (wall time in the schedule's zone), plus the level's span.
            end = resolve(datetime.fromisoformat(value), tz).astimezone(UTC) + span
            if subhour_end is not None:
                end = min(end, subhour_end)
        items.append(("Aggregation", level, end))
    result = []
    for category, name, data_time in items:
        slo = slo_of(slo_minutes, category, name)
        age = (now - data_time).total_seconds() if data_time is not None else None
        result.append(
            {
                "category": category,
                "table": name,
                "data_time": _iso(data_time),
                "age_seconds": round(age, 1) if age is not None else None,
                "slo_minutes": slo,
                "stale": bool(slo and age is not None and age > slo * 60),
            }
        )
    return result
