"""SPEC Q3 on real PostgreSQL and real files: a burst of malformed rows in one hour holds that
hour's export chunk (the chunks around it leave on time), opens `check-failed` and shows
`held` in the Days grid; after the source is fixed and re-transformed the next export run
publishes the chunk once, the incident resolves. An admin's override releases it instead and
is audited; rows of an hour far below its same-weekday median fail `hour-rows` (issue 37)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from test_export import assert_exactly_once, manifests

from gim_tasks.db.engine import make_engine
from gim_tasks.errors import GimError
from gim_tasks.idb.generator import UNKNOWN_ID, generate
from gim_tasks.idb.schema import init_idb
from gim_tasks.jobs import export, extract, transform
from gim_tasks.jobs.base import JobContext
from gim_tasks.monitor import checks, days
from gim_tasks.options.values import Options

START = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # a Monday
NOW = START + timedelta(hours=6, minutes=30)
BAD = START + timedelta(hours=3)  # the hour with 20 % malformed rows
BAD_CHUNK = export.chunk_name(BAD, BAD + timedelta(hours=1))


def options(**texts: str) -> Options:
    return Options.from_texts({tuple(k.split(".")): v for k, v in texts.items()})  # type: ignore[misc]


def etl(url: str, idb: str) -> None:
    for body in (extract.run, transform.run):
        body(JobContext(mart=make_engine(url), idb_urls=[idb], options=Options.defaults()))


def run_export(url: str, out: Path, **extra: str) -> dict[str, Any]:
    texts = {
        "gim-export.output-directory": str(out),
        "gim-export.chunk-size-seconds": "3600",
        "gim-export.start-date": START.date().isoformat(),
        "gim-export.retry-delay-seconds": "0",
        "schedule.run-export": "true",
        **extra,
    }
    ctx = JobContext(
        mart=make_engine(url),
        idb_urls=[],
        options=options(**texts),
        now=lambda: NOW,
        output_base=out.parent,
    )
    export.run(ctx)
    return dict(ctx.counts.summary)


@pytest.fixture
def held(
    make_database: Callable[..., str], gim_env: dict[str, str]
) -> tuple[str, str, Path, list[int]]:
    """Six hours of traffic, one of them with 20 % of its segments malformed (an unknown
    queue), transformed and exported once: (mart, IDB, export folder, the broken ids with
    their queue ids)."""
    idb = make_database(migrated=False)
    init_idb(make_engine(idb))
    with psycopg.connect(idb, autocommit=True) as conn:
        generate(conn, START, 6, agents=20, queues=4, rate=600, seed=9)
        broken = conn.execute(
            "WITH hour AS (SELECT id, queue_id, row_number() OVER (ORDER BY id) AS n "
            "FROM party_segment WHERE queued_at >= %s AND queued_at < %s AND queue_id IS NOT "
            "NULL) UPDATE party_segment p SET queue_id = %s FROM hour "
            "WHERE p.id = hour.id AND hour.n %% 5 = 0 RETURNING p.id, hour.queue_id",
            (BAD, BAD + timedelta(hours=1), UNKNOWN_ID),
        ).fetchall()
    assert len(broken) > 20
    url = gim_env["GIM_DATABASE_URL"]  # the settings' database (the Days grid reads them)
    etl(url, idb)
    out = Path(gim_env["GIM_OUTPUT_DIRECTORY"]) / "export"
    summary = run_export(url, out)
    assert summary["held"] == [BAD_CHUNK], summary
    return url, idb, out, [value for row in broken for value in row]


def open_incidents(url: str) -> list[tuple[str, str]]:
    with make_engine(url).connect() as conn:
        return [
            (row.job, row.detail)
            for row in conn.execute(
                sa.text(
                    "SELECT job, detail FROM incident WHERE condition = 'check-failed' "
                    "AND resolved_at IS NULL"
                )
            )
        ]


def scrape(url: str) -> str:
    """``/metrics`` as Prometheus reads it."""
    import os

    import redis

    from gim_tasks.monitor import metrics

    client = redis.Redis.from_url(os.environ["GIM_REDIS_URL"])
    return metrics.exposition(make_engine(url), client).decode()


def watchdog_pass(url: str, now: datetime = NOW) -> None:
    with make_engine(url).begin() as conn:
        days.check(conn, options(**{"schedule.run-export": "true"}), now)


def test_q3_malformed_hour_holds_its_chunk_until_re_transform_releases_it(
    held: tuple[str, str, Path, list[int]],
) -> None:
    url, idb, out, broken = held
    engine = make_engine(url)
    # Held: not on disk, the mark past it, the chunks around it published, a reason given.
    names = sorted(p.name for p in out.glob("chunk-*"))
    assert BAD_CHUNK not in names and len(names) == 11  # 00:00 to 12:00 but the held one
    with engine.connect() as conn:
        through = conn.execute(sa.text("SELECT exported_through FROM export_mark")).scalar()
        hold = conn.execute(sa.text("SELECT * FROM export_hold")).one()
        failing = checks.listing(conn, failed=True)
    assert through == START + timedelta(hours=6)
    assert hold.chunk_start == BAD and hold.released_at is None
    assert "discard-ratio idb 1 interaction_segment_fact" in hold.reason
    assert [(c["check"], c["subject"], c["holds"]) for c in failing] == [
        ("discard-ratio", "idb 1 interaction_segment_fact", True)
    ]
    assert 18.0 <= float(failing[0]["measured"].rstrip("%")) <= 22.0
    body = scrape(url)  # what Prometheus alerts on
    assert 'gim_quality_checks_failing{check="discard-ratio",holds="true"} 1.0' in body
    assert "gim_export_held_chunks 1.0" in body
    # One check-failed incident for the data day, within one watchdog pass.
    watchdog_pass(url)
    watchdog_pass(url)
    assert [job for job, _ in open_incidents(url)] == ["data day 2026-11-23"]
    # Still held ten days later, past the watchdog's 7-day look-back: still open.
    watchdog_pass(url, NOW + timedelta(days=10))
    assert [job for job, _ in open_incidents(url)] == ["data day 2026-11-23"]
    # The grid: the day's export cell is held, with the reason; the day is not complete.
    with engine.connect() as conn:
        marks = days.load(conn, options(**{"schedule.run-export": "true"}), NOW)
    day = days.judge_day(START.date(), marks, "UTC")
    assert day.cells["export"] == days.HELD and "discard-ratio" in day.reasons["export"]
    assert not day.complete
    # A second run without a fix: still held, nothing published twice.
    assert run_export(url, out)["released"] == []
    # Fix the source rows; Extract and Transform load them and drop their discards.
    with psycopg.connect(idb, autocommit=True) as conn:
        pairs = list(zip(broken[::2], broken[1::2], strict=True))
        with conn.cursor() as cursor:
            cursor.executemany(
                "UPDATE party_segment SET queue_id = %s WHERE id = %s",
                [(queue, row_id) for row_id, queue in pairs],
            )
    etl(url, idb)
    summary = run_export(url, out)
    assert summary["released"] == [BAD_CHUNK] and summary["held"] == []
    with engine.connect() as conn:
        release = conn.execute(sa.text("SELECT release FROM export_hold")).scalar_one()
    assert release == "passed"
    body = scrape(url)
    assert "gim_export_held_chunks 0.0" in body
    assert 'gim_quality_checks_failing{check="discard-ratio",holds="true"} 0.0' in body
    published = {m["start"]: m for m in manifests(out)}
    assert published[BAD.isoformat()]["held"]["reason"] == hold.reason
    assert_exactly_once(url, out)  # every fact row of the six hours in exactly one chunk
    watchdog_pass(url)
    assert open_incidents(url) == []
    with engine.connect() as conn:
        marks = days.load(conn, options(**{"schedule.run-export": "true"}), NOW)
    assert days.judge_day(START.date(), marks, "UTC").cells["export"] != days.HELD


def test_q3_an_admins_override_releases_the_chunk_and_is_audited(
    held: tuple[str, str, Path, list[int]],
) -> None:
    url, _, out, _ = held
    engine = make_engine(url)
    day = START.date()
    with pytest.raises(GimError, match="needs a reason"):
        checks.override(engine, day, "discard-ratio", "  ", "alice")
    with pytest.raises(GimError, match="not a quality check; checks are discard-ratio"):
        checks.override(engine, day, "discards", "why", "alice")
    with pytest.raises(GimError, match="no failing verdict .* failing there: discard-ratio"):
        checks.override(engine, day, "hour-rows", "why", "alice")
    assert checks.override(engine, day, "discard-ratio", "queue 7 retired upstream", "alice") == 1
    with engine.connect() as conn:
        event = conn.execute(
            sa.text("SELECT * FROM audit_event WHERE action = 'check-override'")
        ).one()
    assert (event.actor, event.target, event.reason) == (
        "alice",
        "2026-11-23 discard-ratio",
        "queue 7 retired upstream",
    )
    assert event.after == {"subjects": ["idb 1 interaction_segment_fact"]}
    summary = run_export(url, out)
    assert summary["released"] == [BAD_CHUNK]
    with engine.connect() as conn:
        hold = conn.execute(sa.text("SELECT release, released_at FROM export_hold")).one()
        verdict = checks.listing(conn, failed=True)
    assert hold.release == "override" and hold.released_at is not None
    # Still failing (the data is as it was), but overridden: it holds nothing.
    assert [(v["overridden_by"], v["holds"]) for v in verdict] == [("alice", False)]
    assert_exactly_once(url, out)
    watchdog_pass(url)
    assert open_incidents(url) == []


def test_q3_an_hour_far_below_its_same_weekday_median_fails_hour_rows(
    make_database: Callable[..., str], tmp_path: Path
) -> None:
    idb = make_database(migrated=False)
    init_idb(make_engine(idb))
    with psycopg.connect(idb, autocommit=True) as conn:
        for weeks in (4, 3, 2, 1):  # the same Monday hour on the four Mondays before
            generate(conn, BAD - timedelta(days=7 * weeks), 1, agents=20, queues=4, rate=900,
                     seed=weeks)  # fmt: skip
        generate(conn, BAD, 1, agents=20, queues=4, rate=180, seed=5)  # a fifth of it
    url = make_database()
    etl(url, idb)
    out = tmp_path / "export"
    summary = run_export(
        url,
        out,
        **{"quality.hour-rows": "error", "gim-export.start-date": BAD.date().isoformat()},
    )
    assert summary["held"] == [BAD_CHUNK], summary
    with make_engine(url).connect() as conn:
        failing = checks.listing(conn, failed=True)
    assert {(c["check"], c["subject"]) for c in failing} >= {
        ("hour-rows", "interaction_segment_fact")
    }
    segment = next(c for c in failing if c["subject"] == "interaction_segment_fact")
    assert 10 <= int(segment["measured"].rstrip("%")) <= 35, segment
    assert segment["bound"] == "50-200%"
    # warn instead of error: shown, nothing held.
    again = tmp_path / "again"
    with make_engine(url).begin() as conn:
        conn.execute(sa.text("DELETE FROM export_mark; DELETE FROM export_hold"))
    summary = run_export(url, again, **{"gim-export.start-date": BAD.date().isoformat()})
    assert summary["held"] == [] and BAD_CHUNK in summary["chunks"]
    with make_engine(url).connect() as conn:
        verdicts = {c["severity"] for c in checks.listing(conn, failed=True)}
    assert verdicts == {"warn"}


def test_q3_day_checks_run_once_the_day_is_aggregated_and_verify_finds_a_lost_row(
    held: tuple[str, str, Path, list[int]],
) -> None:
    from gim_tasks.aggregate.compute import ensure_tables
    from gim_tasks.jobs import aggregate

    url, _, _, _ = held
    engine = make_engine(url)
    opts = options(**{"quality.aggregate-verify": "error"})
    later = NOW + timedelta(days=1)
    with engine.begin() as conn:
        ensure_tables(conn)
        assert checks.due_days(conn, opts, later) == []  # its aggregation waits: not yet
    aggregate.run_once(JobContext(mart=engine, idb_urls=[], options=Options.defaults()))
    with engine.begin() as conn:
        assert checks.due_days(conn, opts, later) == [START.date()]
        assert checks.run_due(conn, opts, later) == 1
        assert checks.due_days(conn, opts, later) == []  # judged: not again
        verdicts = {
            (c["check"], c["subject"]): c["passed"]
            for c in checks.listing(conn, day=START.date())
            if c["end"] == (START.replace(hour=0) + timedelta(days=1)).isoformat()
        }
    assert verdicts[("aggregate-verify", "every hierarchy")] is True
    assert ("discard-ratio", "idb 1 interaction_segment_fact") in verdicts  # the day's ratio
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM agg_h_queue_hour WHERE ctid IN "
                             "(SELECT ctid FROM agg_h_queue_hour LIMIT 1)"))  # fmt: skip
        assert checks.run_due(conn, opts, later, [START.date()]) == 1
        found = [c for c in checks.listing(conn, failed=True) if c["check"] == "aggregate-verify"]
    assert len(found) == 1 and found[0]["holds"], found
    assert "agg_h_queue_hour: 1 missing or different, 0 extra" in found[0]["detail"]
    # A failing day check is judged again after RECHECK, and passes once rebuilt.
    with engine.begin() as conn:
        assert checks.due_days(conn, opts, later + checks.RECHECK) == [START.date()]


def test_q3_manifest_of_a_published_chunk_names_no_hold_when_none_was(
    held: tuple[str, str, Path, list[int]],
) -> None:
    _, _, out, _ = held
    first = json.loads((sorted(out.glob("chunk-*"))[0] / "manifest.json").read_text())
    assert "held" not in first
