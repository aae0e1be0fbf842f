"""Quality gates in front of the export (SPEC Q3; issue 37).

Four declared checks, each ``off``, ``warn`` or ``error`` (``[quality]`` options):

- ``discard-ratio``: discarded source rows (R3) / (facts + discards) per IDB and fact table,
  over each export chunk (before it is published) and over each closed local day;
- ``hour-rows``: fact rows of each closed hour, per fact table (all IDBs), against the median
  of the same local hour on the last four same weekdays, within ``hour-rows-bounds``;
- ``aggregate-verify``: a one-day ``gim aggregate verify`` (SUBHOUR, HOUR, DAY levels) of each
  closed day whose aggregation is done;
- ``manifest-rows``: a chunk's manifest rows of each file = the fact rows of its interval,
  counted after the files are written and before the chunk is renamed into place.

Where they run: the data checks need the facts, which the web role cannot read, so they run in
the export job (owner role, fenced): the chunk checks right before a chunk is published, the
day checks at the end of each export run (``run_due``) and by ``gim check run``. Each verdict
is stored in ``quality_check`` (one row per check, subject and interval: the newest verdict).

What an ``error`` does: every chunk an unreleased failing error row overlaps is held
(``export_hold``): the export skips it with the reason, moves its mark past it, and tries the
held chunks first at every run; once the checks pass again (the data was fixed: a re-transform
removed the discards) or an admin overrides the check with a reason (``gim check override``,
audited), the chunk is published, once (D4: the chunk's folder is reused when it was renamed
before a crash). The watchdog (which may run as the web role: it reads ``quality_check`` only)
opens one ``check-failed`` incident per data day with a failing error check and resolves it
when none is left. ``warn`` only shows.

The judgements are pure functions over counts (tested without servers); I/O is below them.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gim_tasks.errors import GimError, NotFound
from gim_tasks.schedule.localtime import resolve, wall, zone

OFF, WARN, ERROR = "off", "warn", "error"
#: How often a failing day check is judged again (the data may have been fixed).
RECHECK = timedelta(minutes=5)
#: Same weekdays back to compare an hour with.
WEEKS = 4


class Check(StrEnum):
    DISCARD_RATIO = "discard-ratio"
    HOUR_ROWS = "hour-rows"
    AGGREGATE_VERIFY = "aggregate-verify"
    MANIFEST_ROWS = "manifest-rows"


CHECKS = tuple(check.value for check in Check)


@dataclass(frozen=True)
class Result:
    """One verdict of one check on one subject over [start, end)."""

    check: str
    subject: str
    day: date
    start: datetime
    end: datetime
    severity: str
    passed: bool
    measured: str
    bound: str
    detail: str

    @property
    def holds(self) -> bool:
        return not self.passed and self.severity == ERROR


# ----- the judgements (pure) ----------------------------------------------------------------


def judge_discards(
    counts: Mapping[tuple[int, str], tuple[int, int]],
    *,
    day: date,
    start: datetime,
    end: datetime,
    severity: str,
    max_percent: int,
    min_rows: int,
) -> list[Result]:
    """``counts``: (IDB, fact table) -> (fact rows, discarded rows) of [start, end). A pair
    with fewer than ``min_rows`` source rows is not judged (no result)."""
    found = []
    for (idb, fact), (rows, discarded) in sorted(counts.items()):
        total = rows + discarded
        if severity == OFF or total < min_rows:
            continue
        percent = 100.0 * discarded / total
        passed = percent <= max_percent
        found.append(
            Result(
                Check.DISCARD_RATIO,
                f"idb {idb} {fact}",
                day,
                start,
                end,
                severity,
                passed,
                f"{percent:.1f}%",
                f"<= {max_percent}%",
                f"{discarded} of {total} source rows of IDB {idb} for {fact} discarded "
                f"({percent:.1f}%, at most {max_percent}% passes)",
            )
        )
    return found


def judge_hour(
    fact: str,
    rows: int,
    earlier: Iterable[int | None],
    *,
    day: date,
    start: datetime,
    end: datetime,
    severity: str,
    bounds: tuple[int, int],
    min_rows: int,
) -> Result | None:
    """Rows of one closed hour against the median of the same hour on earlier same weekdays
    (None: a week without data). Not judged (None) with fewer than two earlier weeks or a
    median below ``min_rows``."""
    known = [n for n in earlier if n is not None]
    if severity == OFF or len(known) < 2:
        return None
    median = statistics.median(known)
    if median < min_rows:
        return None
    percent = 100.0 * rows / median
    low, high = bounds
    passed = low <= percent <= high
    return Result(
        Check.HOUR_ROWS,
        fact,
        day,
        start,
        end,
        severity,
        passed,
        f"{percent:.0f}%",
        f"{low}-{high}%",
        f"{rows} rows in {fact} for the hour from {start:%Y-%m-%d %H:%M} UTC, {percent:.0f}% of "
        f"the median {median:g} of the same hour on {len(known)} earlier same weekdays "
        f"({low}-{high}% passes)",
    )


def judge_manifest(
    written: Mapping[str, int],
    facts: Mapping[str, int],
    *,
    chunk: str,
    day: date,
    start: datetime,
    end: datetime,
    severity: str,
) -> Result | None:
    """A chunk's rows per file against the fact rows of its interval (files with a fact
    table behind them only)."""
    if severity == OFF or not facts:
        return None
    differ = {name: (written.get(name, 0), n) for name, n in sorted(facts.items())}
    differ = {name: pair for name, pair in differ.items() if pair[0] != pair[1]}
    words = "; ".join(f"{name}: {w} written, {n} facts" for name, (w, n) in differ.items())
    return Result(
        Check.MANIFEST_ROWS,
        chunk,
        day,
        start,
        end,
        severity,
        not differ,
        f"{len(differ)} of {len(facts)} files differ",
        "every file = its facts",
        words or f"{len(facts)} files, each with as many rows as its facts",
    )


def judge_verify(
    differences: Mapping[str, list[dict[str, Any]]],
    *,
    day: date,
    start: datetime,
    end: datetime,
    severity: str,
) -> Result | None:
    """One day's aggregate verification: hierarchy -> its tables with differences."""
    if severity == OFF:
        return None
    bad = {name: found for name, found in sorted(differences.items()) if found}
    words = "; ".join(
        f"{entry['table']}: {entry['missing_or_different']} missing or different, "
        f"{entry['extra']} extra"
        for found in bad.values()
        for entry in found
    )
    return Result(
        Check.AGGREGATE_VERIFY,
        "every hierarchy",
        day,
        start,
        end,
        severity,
        not bad,
        f"{sum(len(found) for found in bad.values())} tables differ",
        "0 tables differ",
        words or f"{len(differences)} hierarchies equal a recomputation from the facts",
    )


# ----- measuring (I/O) ----------------------------------------------------------------------


def _specs() -> Any:
    from gim_tasks.jobs.transform import FACTS

    return FACTS


def _start_column(spec: Any) -> str:
    return str(spec.start).removeprefix("s.")


def discard_counts(
    conn: Connection, start: datetime, end: datetime
) -> dict[tuple[int, str], tuple[int, int]]:
    """(IDB, fact table) -> (fact rows, discards) whose data time is in [start, end), for the
    pairs with a discard (a pair without one passes: it is not counted). A discard's data time
    is its source row's start, kept in its payload."""
    found: dict[tuple[int, str], tuple[int, int]] = {}
    for spec in _specs():
        fact = spec.fact.name
        discarded: dict[int, int] = dict(
            conn.execute(  # type: ignore[arg-type]
                sa.text(
                    "SELECT idb_id, count(*) FROM discard WHERE source_table = :fact "
                    "AND CAST(payload->>:column AS timestamptz) >= :s "
                    "AND CAST(payload->>:column AS timestamptz) < :e GROUP BY idb_id"
                ),
                {"fact": fact, "column": _start_column(spec), "s": start, "e": end},
            ).all()
        )
        if not discarded:
            continue
        rows: dict[int, int] = dict(
            conn.execute(  # type: ignore[arg-type]
                sa.text(
                    f"SELECT idb_id, count(*) FROM {fact} WHERE start_ts >= :s AND start_ts < :e "
                    "AND idb_id = ANY(:idbs) GROUP BY idb_id"
                ),
                {"s": start, "e": end, "idbs": list(discarded)},
            ).all()
        )
        for idb, n in discarded.items():
            found[(int(idb), fact)] = (int(rows.get(idb, 0)), int(n))
    return found


def interval_counts(conn: Connection, fact: str, start: datetime, end: datetime) -> dict[int, int]:
    """Rows of ``fact`` per 15-minute interval key (``date_time_key``: the epoch second its
    start's interval begins) over [start, end), both on interval boundaries: an index-only
    scan of ``ix_*_date_time_key`` in each day partition."""
    return {
        int(key): int(n)
        for key, n in conn.execute(
            sa.text(
                f"SELECT date_time_key, count(*) FROM {fact} WHERE date_time_key >= :a "
                "AND date_time_key < :b GROUP BY 1"
            ),
            {"a": int(start.timestamp()), "b": int(end.timestamp())},
        )
    }


def _sum(counted: Mapping[int, int], start: datetime, end: datetime) -> int:
    first, last = int(start.timestamp()), int(end.timestamp())
    return sum(counted.get(key, 0) for key in range(first, last, 900))


def rows_between(conn: Connection, fact: str, start: datetime, end: datetime) -> int:
    """Rows of ``fact`` whose start is in [start, end), by ``start_ts`` alone: exactly the rows
    the export selects (manifest-rows), whatever their interval key says."""
    return int(
        conn.execute(
            sa.text(f"SELECT count(*) FROM {fact} WHERE start_ts >= :s AND start_ts < :e"),
            {"s": start, "e": end},
        ).scalar_one()
    )


def _oldest_fact(conn: Connection, fact: str) -> datetime | None:
    """The start of the oldest fact's 15-minute interval (an index probe per partition)."""
    key = conn.execute(sa.text(f"SELECT min(date_time_key) FROM {fact}")).scalar()
    return datetime.fromtimestamp(key, UTC) if key is not None else None


def same_weekdays(start: datetime, tz_name: str) -> list[tuple[datetime, datetime]]:
    """The same local hour on the last ``WEEKS`` same weekdays, as UTC spans (S10 in a DST
    gap: the hour moves as the schedule's do)."""
    tz = zone(tz_name)
    local = wall(start, tz)
    spans = []
    for weeks in range(1, WEEKS + 1):
        at = resolve(local - timedelta(days=7 * weeks), tz).astimezone(UTC)
        spans.append((at, at + timedelta(hours=1)))
    return spans


def local_day(at: datetime, tz_name: str) -> date:
    return wall(at, zone(tz_name)).date()


def _discard_ratio(
    conn: Connection, options: Any, day: date, start: datetime, end: datetime
) -> list[Result]:
    return judge_discards(
        discard_counts(conn, start, end),
        day=day,
        start=start,
        end=end,
        severity=options.get("quality", "discard-ratio"),
        max_percent=options.get("quality", "discard-ratio-max-percent"),
        min_rows=options.get("quality", "discard-ratio-min-rows"),
    )


def chunk_checks(
    conn: Connection, options: Any, start: datetime, end: datetime
) -> tuple[list[Result], list[tuple[str, datetime, datetime]]]:
    """The checks of one export chunk [start, end) before it is published: discard ratio over
    the chunk, rows of each whole hour in it. Returns the results and the scopes judged
    (check, start, end): a scope's earlier results not found again are removed by ``store``."""
    tz_name = options.schedule().timezone
    day = local_day(start, tz_name)
    results = _discard_ratio(conn, options, day, start, end)
    scopes = [(Check.DISCARD_RATIO.value, start, end)]
    severity = options.get("quality", "hour-rows")
    if severity == OFF:
        return results, scopes
    # Whole hours of the chunk that start on a 15-minute boundary (the interval keys).
    hours = []
    hour = start
    while hour + timedelta(hours=1) <= end:
        if int(hour.timestamp()) % 900 == 0:
            hours.append((hour, [(hour, hour + timedelta(hours=1)), *same_weekdays(hour, tz_name)]))
        hour += timedelta(hours=1)
    for fact in dict.fromkeys(s.fact.name for s in _specs()):
        first = _oldest_fact(conn, fact)
        # One grouped index-only count per week (this one and the four before), not per hour.
        counted: dict[int, int] = {}
        for week in range(WEEKS + 1):
            spans = [each[1][week] for each in hours]
            if spans:
                counted |= interval_counts(conn, fact, spans[0][0], max(e for _, e in spans))
        for hour, spans in hours:
            rows = [_sum(counted, s, e) for s, e in spans]
            earlier = [
                n if first is not None and s >= first else None
                for n, (s, _) in zip(rows[1:], spans[1:], strict=True)
            ]
            found = judge_hour(
                fact,
                rows[0],
                earlier,
                day=local_day(hour, tz_name),
                start=hour,
                end=hour + timedelta(hours=1),
                severity=severity,
                bounds=options.get("quality", "hour-rows-bounds"),
                min_rows=options.get("quality", "hour-rows-min-rows"),
            )
            if found is not None:
                results.append(found)
    scopes += [(Check.HOUR_ROWS.value, hour, hour + timedelta(hours=1)) for hour, _ in hours]
    return results, scopes


def day_checks(
    conn: Connection, options: Any, day: date
) -> tuple[list[Result], list[tuple[str, datetime, datetime]]]:
    """The checks of one closed local day: discard ratio over the day, a one-day verify."""
    from gim_tasks.aggregate.compute import verify
    from gim_tasks.aggregate.registry import HIERARCHIES
    from gim_tasks.monitor.days import bounds

    tz_name = options.schedule().timezone
    start, end = bounds(day, tz_name)
    results = _discard_ratio(conn, options, day, start, end)
    severity = options.get("quality", "aggregate-verify")
    if severity != OFF:
        levels = ("SUBHOUR", "HOUR", "DAY")
        # Hierarchies whose tables the aggregation made (none: it never ran, no verdict).
        made = [
            h
            for h in HIERARCHIES
            if all(
                conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": h.table(level)}).scalar()
                for level in levels
            )
        ]
        differences = {h.name: verify(conn, h, day, day, levels=levels) for h in made}
        found = judge_verify(differences, day=day, start=start, end=end, severity=severity)
        if found is not None and made:
            results.append(found)
    scopes = [(Check.DISCARD_RATIO.value, start, end), (Check.AGGREGATE_VERIFY.value, start, end)]
    return results, scopes


# ----- the verdicts (I/O) -------------------------------------------------------------------


def store(
    conn: Connection,
    results: Iterable[Result],
    scopes: Iterable[tuple[str, datetime, datetime]],
    now: datetime,
) -> None:
    """Replace the verdicts of the judged scopes with ``results`` (in the caller's transaction:
    with the hold or the mark it decides). An override stays with its row while the row
    stays failing; a row that passes or is not judged any more drops it."""
    kept = list(results)
    for check, start, end in scopes:
        subjects = [r.subject for r in kept if (r.check, r.start, r.end) == (check, start, end)]
        conn.execute(
            sa.text(
                "DELETE FROM quality_check WHERE name = :n AND start_ts = :s AND end_ts = :e "
                "AND NOT (subject = ANY(:subjects))"
            ),
            {"n": check, "s": start, "e": end, "subjects": subjects},
        )
    for r in kept:
        conn.execute(
            sa.text(
                "INSERT INTO quality_check (name, subject, day, start_ts, end_ts, severity, "
                "passed, measured, bound, detail, checked_at) VALUES (:n, :subject, :day, :s, "
                ":e, :severity, :passed, :measured, :bound, :detail, :now) "
                "ON CONFLICT ON CONSTRAINT uq_quality_check_scope DO UPDATE SET "
                "day = excluded.day, severity = excluded.severity, passed = excluded.passed, "
                "measured = excluded.measured, bound = excluded.bound, "
                "detail = excluded.detail, checked_at = excluded.checked_at, "
                "overridden_at = CASE WHEN excluded.passed THEN NULL "
                "ELSE quality_check.overridden_at END, "
                "overridden_by = CASE WHEN excluded.passed THEN NULL "
                "ELSE quality_check.overridden_by END, "
                "override_reason = CASE WHEN excluded.passed THEN NULL "
                "ELSE quality_check.override_reason END"
            ),
            {
                "n": r.check,
                "subject": r.subject,
                "day": r.day,
                "s": r.start,
                "e": r.end,
                "severity": r.severity,
                "passed": r.passed,
                "measured": r.measured,
                "bound": r.bound,
                "detail": r.detail,
                "now": now,
            },
        )


def holding(
    conn: Connection, start: datetime, end: datetime, names: Iterable[str] = CHECKS
) -> list[str]:
    """Why [start, end) may not be published: failing ``error`` verdicts of ``names``
    overlapping it that no admin overrode (empty: it may)."""
    return [
        f"{row.name} {row.subject}: {row.detail}"
        for row in conn.execute(
            sa.text(
                "SELECT name, subject, detail FROM quality_check WHERE NOT passed "
                "AND severity = 'error' AND overridden_at IS NULL AND start_ts < :e "
                "AND end_ts > :s AND name = ANY(:names) ORDER BY name, subject, start_ts"
            ),
            {"s": start, "e": end, "names": list(names)},
        )
    ]


def overridden(conn: Connection, start: datetime, end: datetime) -> bool:
    """Is a failing error verdict overlapping [start, end) overridden (the release's why)?"""
    return bool(
        conn.execute(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM quality_check WHERE NOT passed "
                "AND severity = 'error' AND overridden_at IS NOT NULL AND start_ts < :e "
                "AND end_ts > :s)"
            ),
            {"s": start, "e": end},
        ).scalar_one()
    )


def due_days(conn: Connection, options: Any, now: datetime, look_back: int = 7) -> list[date]:
    """Closed local days whose day checks are due: the last closed day once its aggregation
    is done (nothing of it waits in ``agg_pending``) and it was not judged yet, and any day of
    the last ``look_back`` judged failing more than ``RECHECK`` ago (the data may be fixed)."""
    from gim_tasks.monitor.days import bounds

    tz_name = options.schedule().timezone
    yesterday = local_day(now, tz_name) - timedelta(days=1)
    names = [Check.DISCARD_RATIO.value, Check.AGGREGATE_VERIFY.value]
    due = []
    for back in range(look_back):
        day = yesterday - timedelta(days=back)
        start, end = bounds(day, tz_name)
        seen = conn.execute(
            sa.text(
                "SELECT count(*) AS n, count(*) FILTER (WHERE NOT passed "
                "AND checked_at <= :recent) AS stale FROM quality_check "
                "WHERE name = ANY(:names) AND start_ts = :s AND end_ts = :e"
            ),
            {"names": names, "s": start, "e": end, "recent": now - RECHECK},
        ).one()
        if seen.stale:
            due.append(day)
        elif day == yesterday and not seen.n and _ready(conn, start, end):
            due.append(day)
    return sorted(due)


def _ready(conn: Connection, start: datetime, end: datetime) -> bool:
    """Has [start, end) facts, none of them waiting for aggregation?"""
    return bool(
        conn.execute(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM interaction_segment_fact WHERE start_ts >= :s "
                "AND start_ts < :e) AND NOT EXISTS (SELECT 1 FROM agg_pending "
                "WHERE date_time_key >= :a AND date_time_key < :b)"
            ),
            {"s": start, "e": end, "a": int(start.timestamp()), "b": int(end.timestamp())},
        ).scalar_one()
    )


def run_due(conn: Connection, options: Any, now: datetime, days: Iterable[date] = ()) -> int:
    """Judge the day checks of ``days`` (none given: the due ones); returns how many."""
    chosen = list(days) or due_days(conn, options, now)
    for day in chosen:
        results, scopes = day_checks(conn, options, day)
        store(conn, results, scopes, now)
    return len(chosen)


def override(
    engine: Engine, day: date, check: str, reason: str, actor: str, now: datetime | None = None
) -> int:
    """An admin releases the failing verdicts of ``check`` on ``day`` (Q3): they stop holding
    the export (published at its next run) and the ``check-failed`` incident resolves at the
    watchdog's next pass unless another check still fails. Audited, in the same transaction."""
    from gim_tasks.monitor import audit

    if check not in CHECKS:
        raise GimError(f"'{check}' is not a quality check; checks are {', '.join(CHECKS)}")
    if not reason or not reason.strip():
        raise GimError("an override needs a reason (--reason TEXT): it is kept in the audit trail")
    now = now or datetime.now(UTC)
    with engine.begin() as conn:
        changed = conn.execute(
            sa.text(
                "UPDATE quality_check SET overridden_at = :now, overridden_by = :actor, "
                "override_reason = :reason WHERE day = :day AND name = :n AND NOT passed "
                "AND overridden_at IS NULL RETURNING subject"
            ),
            {"now": now, "actor": actor, "reason": reason.strip(), "day": day, "n": check},
        ).all()
        if not changed:
            failing = sorted(
                set(
                    conn.execute(
                        sa.text(
                            "SELECT name FROM quality_check WHERE day = :day AND NOT passed "
                            "AND overridden_at IS NULL"
                        ),
                        {"day": day},
                    ).scalars()
                )
            )
            raise NotFound(
                f"{check} has no failing verdict to override on {day}; failing there: "
                + (", ".join(failing) or "none")
            )
        audit.record(
            conn,
            audit.Action.CHECK_OVERRIDE,
            f"{day.isoformat()} {check}",
            actor,
            reason=reason.strip(),
            after={"subjects": [row.subject for row in changed]},
        )
    return len(changed)


def listing(
    conn: Connection, day: date | None = None, failed: bool = False, since: date | None = None
) -> list[dict[str, Any]]:
    """``gim checks``, ``GET /api/checks``, the Days page: verdicts newest day first, failing
    ones first within a day (at most 1000)."""
    query = (
        "SELECT name, subject, day, start_ts, end_ts, severity, passed, measured, bound, detail, "
        "checked_at, overridden_at, overridden_by, override_reason FROM quality_check WHERE "
        "(CAST(:day AS date) IS NULL OR day = :day) AND (NOT :failed OR NOT passed) "
        "AND (CAST(:since AS date) IS NULL OR day >= :since) "
        "ORDER BY day DESC, passed, start_ts, name, subject LIMIT 1000"
    )
    return [
        {
            "check": row.name,
            "subject": row.subject,
            "day": row.day.isoformat(),
            "start": row.start_ts.isoformat(),
            "end": row.end_ts.isoformat(),
            "severity": row.severity,
            "passed": row.passed,
            "holds": not row.passed and row.severity == ERROR and row.overridden_at is None,
            "measured": row.measured,
            "bound": row.bound,
            "detail": row.detail,
            "checked_at": row.checked_at.isoformat(),
            "overridden_at": row.overridden_at.isoformat() if row.overridden_at else None,
            "overridden_by": row.overridden_by,
            "override_reason": row.override_reason,
        }
        for row in conn.execute(sa.text(query), {"day": day, "failed": failed, "since": since})
    ]


def failing_days(conn: Connection, since: date) -> dict[date, list[str]]:
    """Days from ``since`` with failing error verdicts no admin overrode (the watchdog's
    ``check-failed``): day -> their names and subjects."""
    found: dict[date, list[str]] = {}
    for row in conn.execute(
        sa.text(
            "SELECT day, name, subject FROM quality_check WHERE day >= :since AND NOT passed "
            "AND severity = 'error' AND overridden_at IS NULL ORDER BY day, name, subject"
        ),
        {"since": since},
    ):
        found.setdefault(row.day, []).append(f"{row.name} {row.subject}")
    return found
