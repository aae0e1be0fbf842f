"""Job_AggregateGIM against real PostgreSQL (SPEC D3, M3, M4, S10 local days)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gim_tasks.aggregate.compute import ensure_tables, verify
from gim_tasks.aggregate.params import parse
from gim_tasks.aggregate.registry import HIERARCHIES
from gim_tasks.db.engine import make_engine
from gim_tasks.idb.generator import generate
from gim_tasks.idb.schema import init_idb
from gim_tasks.jobs import aggregate, extract, transform
from gim_tasks.jobs.base import JobContext
from gim_tasks.options.values import Options
from gim_tasks.runtime import manager

OPTIONS = Options.from_texts({("schedule", "timezone"): "Europe/Berlin"})


def etl(mart: str, idb: str) -> None:
    for body in (extract.run, transform.run):
        body(JobContext(mart=make_engine(mart), idb_urls=[idb], options=OPTIONS))


def once(mart: str) -> JobContext:
    ctx = JobContext(
        mart=make_engine(mart),
        idb_urls=[],
        options=OPTIONS,
        now=lambda: datetime(2026, 11, 30, tzinfo=UTC),
    )
    aggregate.run(ctx, once=True)
    return ctx


def mismatches(mart: str) -> list[dict]:
    with make_engine(mart).begin() as conn:
        ensure_tables(conn)
        return [d for h in HIERARCHIES for d in verify(conn, h, date(2000, 1, 1), date(2100, 1, 1))]


@pytest.fixture
def idb(make_database: Callable[..., str]) -> str:
    url = make_database(migrated=False)
    init_idb(make_engine(url))
    return url


def test_d3_aggregates_equal_recomputation_incrementally_and_after_reaggregation(
    idb: str, database_url: str
) -> None:
    rng = random.Random(3)
    with psycopg.connect(idb, autocommit=True) as conn:
        generate(
            conn,
            datetime(2026, 3, 28, 20, tzinfo=UTC),
            8,
            agents=25,
            queues=5,
            rate=400,
            seed=rng.randrange(1000),
        )  # across Berlin's spring-forward night
    etl(database_url, idb)
    ctx = once(database_url)
    assert ctx.counts.read > 0 and ctx.counts.written > 0
    assert mismatches(database_url) == []
    # More traffic, some of it late updates of earlier calls: only changed intervals are redone.
    with psycopg.connect(idb, autocommit=True) as conn:
        generate(
            conn,
            datetime(2026, 3, 29, 4, tzinfo=UTC),
            3,
            agents=25,
            queues=5,
            rate=400,
            seed=rng.randrange(1000),
        )
        conn.execute(
            "UPDATE party_segment SET outcome = 'abandoned', agent_id = NULL "
            "WHERE id IN (SELECT id FROM party_segment ORDER BY id LIMIT 40)"
        )
    etl(database_url, idb)
    with make_engine(database_url).connect() as conn:
        pending = conn.execute(sa.text("SELECT count(*) FROM agg_pending")).scalar_one()
        intervals = conn.execute(
            sa.text("SELECT count(DISTINCT date_time_key) FROM interaction_segment_fact")
        ).scalar_one()
    assert 0 < pending
    assert mismatches(database_url) != []  # stale until aggregation runs
    once(database_url)
    assert mismatches(database_url) == []
    assert intervals > 0
    # Re-aggregation of a range after the aggregates were damaged (M4): rebuilt exactly.
    with make_engine(database_url).begin() as conn:
        conn.execute(sa.text("DELETE FROM agg_h_queue_subhour"))
        conn.execute(sa.text("UPDATE agg_h_agent_day SET offered = offered + 1"))
        conn.execute(
            sa.text("INSERT INTO agg_request (params, requested_by) VALUES (:p, 'test')"),
            {
                "p": __import__("json").dumps(
                    parse("-insertPendingAgg ALLSETS:2026-03-28:2026-03-29").as_dict()
                )
            },
        )
    once(database_url)
    assert mismatches(database_url) == []


def test_d3_incremental_month_delta_drops_a_group_that_left_the_month(
    idb: str, database_url: str
) -> None:
    # MONTH is updated by deltas on incremental passes (old MONTH - old DAY + new DAY), and
    # QUARTER and YEAR from the months and quarters before and after: a group whose facts all
    # go away must disappear, and other days of the month, months of the quarter must stay.
    with psycopg.connect(idb, autocommit=True) as conn:
        generate(  # another month of the same quarter and year
            conn, datetime(2026, 6, 9, 6, tzinfo=UTC), 3, agents=12, queues=3, rate=300, seed=10
        )
        generate(
            conn, datetime(2026, 5, 4, 6, tzinfo=UTC), 6, agents=12, queues=3, rate=300, seed=8
        )
        generate(
            conn, datetime(2026, 5, 20, 6, tzinfo=UTC), 4, agents=12, queues=3, rate=300, seed=9
        )
    etl(database_url, idb)
    once(database_url)
    with make_engine(database_url).begin() as conn:
        agent = conn.execute(
            sa.text(
                "SELECT agent_key FROM interaction_segment_fact WHERE agent_key IS NOT NULL "
                "AND start_ts >= '2026-05-20' AND start_ts < '2026-06-01' "
                "ORDER BY agent_key LIMIT 1"
            )
        ).scalar_one()
        # This agent's May 4 rows go away; the group must survive on May 20 only.
        conn.execute(
            sa.text(
                "INSERT INTO agg_pending (fact, date_time_key) SELECT DISTINCT "
                "'interaction_segment_fact', date_time_key FROM interaction_segment_fact "
                "WHERE agent_key = :a AND start_ts < '2026-05-10' ON CONFLICT DO NOTHING"
            ),
            {"a": agent},
        )
        conn.execute(
            sa.text(
                "DELETE FROM interaction_segment_fact WHERE agent_key = :a "
                "AND start_ts < '2026-05-10'"
            ),
            {"a": agent},
        )
        before = conn.execute(
            sa.text(
                "SELECT offered FROM agg_h_agent_month WHERE agent_key = :a "
                "AND bucket < '2026-06-01'"
            ),
            {"a": agent},
        ).scalar_one()
    once(database_url)
    assert mismatches(database_url) == []
    with make_engine(database_url).begin() as conn:
        after = conn.execute(
            sa.text(
                "SELECT offered FROM agg_h_agent_month WHERE agent_key = :a "
                "AND bucket < '2026-06-01'"
            ),
            {"a": agent},
        ).scalar_one()
        # Now every fact of the agent goes: the group leaves the month, and (June's facts
        # gone too) the quarter and the year entirely.
        conn.execute(
            sa.text(
                "INSERT INTO agg_pending (fact, date_time_key) SELECT DISTINCT "
                "'interaction_segment_fact', date_time_key FROM interaction_segment_fact "
                "WHERE agent_key = :a ON CONFLICT DO NOTHING"
            ),
            {"a": agent},
        )
        conn.execute(
            sa.text("DELETE FROM interaction_segment_fact WHERE agent_key = :a"), {"a": agent}
        )
    assert 0 < after < before
    once(database_url)
    assert mismatches(database_url) == []
    with make_engine(database_url).connect() as conn:
        for level in ("month", "quarter", "year"):
            left = conn.execute(
                sa.text(f"SELECT count(*) FROM agg_h_agent_queue_{level} WHERE agent_key = :a"),
                {"a": agent},
            ).scalar_one()
            assert left == 0, level
        quarter = conn.execute(sa.text("SELECT count(*) FROM agg_h_agent_quarter")).scalar_one()
    assert quarter > 0  # the other agents stay


def test_d3_a_measure_added_to_the_registry_is_added_and_filled(
    idb: str, database_url: str
) -> None:
    # Tables created before a measure existed get the column and a queued re-aggregation.
    with psycopg.connect(idb, autocommit=True) as conn:
        generate(conn, datetime(2026, 5, 4, 6, tzinfo=UTC), 3, agents=8, queues=2, rate=200, seed=4)
    etl(database_url, idb)
    once(database_url)
    with make_engine(database_url).begin() as conn:
        for level in ("subhour", "hour", "day", "month", "quarter", "year"):
            conn.execute(sa.text(f"ALTER TABLE agg_h_queue_abn_{level} DROP COLUMN offered"))
    once(database_url)  # ensure_tables adds the column back, 0-filled, and queues the rebuild
    with make_engine(database_url).connect() as conn:
        request = conn.execute(
            sa.text("SELECT params, requested_by, done_at FROM agg_request")
        ).one()
        filled = conn.execute(sa.text("SELECT sum(offered) FROM agg_h_queue_abn_year")).scalar()
    assert request.params["hierarchies"] == ["H_QUEUE_ABN"] and request.done_at is not None
    assert request.params["start"] == request.params["end"] == "2026-05-04"
    assert filled and filled > 0
    assert mismatches(database_url) == []


def test_s10_day_level_uses_local_days_on_dst_day(idb: str, database_url: str) -> None:
    with psycopg.connect(idb, autocommit=True) as conn:
        generate(
            conn, datetime(2026, 3, 28, 22, tzinfo=UTC), 26, agents=10, queues=2, rate=200, seed=5
        )
    etl(database_url, idb)
    once(database_url)
    with make_engine(database_url).connect() as conn:
        day = conn.execute(
            sa.text("SELECT sum(offered) FROM agg_h_queue_day WHERE bucket = '2026-03-29'")
        ).scalar_one()
        local = conn.execute(
            sa.text(
                "SELECT count(*) FROM interaction_segment_fact f JOIN date_time d USING "
                "(date_time_key) WHERE d.local_date = '2026-03-29'"
            )
        ).scalar_one()
        utc_day = conn.execute(
            sa.text(
                "SELECT count(*) FROM interaction_segment_fact WHERE start_ts >= "
                "'2026-03-29 00:00+00' AND start_ts < '2026-03-30 00:00+00'"
            )
        ).scalar_one()
        hours = conn.execute(
            sa.text(
                "SELECT count(DISTINCT bucket) FROM agg_h_queue_hour WHERE bucket >= '2026-03-29' "
                "AND bucket < '2026-03-30'"
            )
        ).scalar_one()
    assert day == local != utc_day  # the reporting day is the local day (S10)
    assert hours == 23  # the spring-forward day has 23 local hours


@pytest.mark.date_sensitive
def test_m3_m4_manual_rules(idb: str, gim_env: dict[str, str]) -> None:
    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    with pytest.raises(manager.InvalidRequest, match="unknown hierarchy 'H_QUEUEZ'"):
        manager.request_run(
            engine,
            "Job_AggregateGIM",
            "alice",
            {"params": "-insertPendingAgg H_QUEUEZ-HOUR:2026-01-01:2026-01-02"},
        )
    today = datetime.now(UTC).date()  # in DATE_TIME (filled from yesterday), facts held (D5)
    started = manager.request_run(
        engine,
        "Job_AggregateGIM",
        "alice",
        {"params": f"-insertPendingAgg ALLSETS:{today}:{today}"},
    )
    assert started.state == "Running" and "request is queued (M4)" in (started.reason or "")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE job_run SET state = 'Running', started_at = now(), "
                "heartbeat_at = now() WHERE id = :i"
            ),
            {"i": started.run_id},
        )
    queued = manager.request_run(
        engine,
        "Job_AggregateGIM",
        "bob",
        {"params": f"-insertPendingAgg H_AGENT-DAY:{today}:{today}"},
    )
    assert queued.run_id == started.run_id
    assert f"(run {started.run_id}) processes it (M4)" in (queued.reason or "")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE job_run SET state = 'Stopped', stop_kind = 'operator', ended_at = now() "
                "WHERE id = :i"
            ),
            {"i": started.run_id},
        )
        requests = conn.execute(sa.text("SELECT count(*) FROM agg_request")).scalar_one()
    assert requests == 2  # the malformed request queued nothing
    from gim_tasks.options import store

    store.set_option(engine, "schedule", "run-aggregates", "true", "t")
    store.set_option(engine, "schedule", "aggregate-schedule", "0 4", "t")
    store.set_option(engine, "schedule", "aggregate-duration", "00:01", "t")
    # M3 with the injected clock: before, inside and after the one-minute window (GMT).
    replies = []
    for when in ((3, 59), (4, 0, 30), (4, 1)):
        reply = manager.request_run(
            engine, "Job_AggregateGIM", "carol", now=datetime(2026, 11, 23, *when, tzinfo=UTC)
        )
        replies.append(reply)
        with engine.begin() as conn:  # no worker here: end it, so the next ask is not S2
            conn.execute(
                sa.text("UPDATE job_run SET state = 'Cancelled', ended_at = now() WHERE id = :i"),
                {"i": reply.run_id},
            )
    assert [a.state for a in replies] == ["Rejected", "Running", "Rejected"]
    assert "(M3)" in (replies[0].reason or "") and "(M3)" in (replies[2].reason or "")


def test_stop_between_batches(idb: str, database_url: str) -> None:
    with psycopg.connect(idb, autocommit=True) as conn:
        generate(conn, datetime(2026, 11, 20, tzinfo=UTC), 24, agents=10, queues=2, rate=300)
    etl(database_url, idb)
    ctx = JobContext(mart=make_engine(database_url), idb_urls=[], options=OPTIONS)
    ctx.progress = lambda what, done, total: ctx.stop.request("window ended (S7)")
    from gim_tasks.jobs.base import StopRequested

    with pytest.raises(StopRequested):
        aggregate.run(ctx)
    assert ctx.counts.summary["batches"] == 1
    once(database_url)
    assert mismatches(database_url) == []


#: Europe/Berlin's spring-forward and fall-back days of 2026 (the jump is at 01:00 UTC on
#: both), and an ordinary day.
SPRING_FORWARD, FALL_BACK, ORDINARY = date(2026, 3, 29), date(2026, 10, 25), date(2026, 11, 10)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@example(  # both DST days in every run, whatever else is drawn (issue 32)
    seed=1, day=SPRING_FORWARD, before=2, hours=4, late_updates=5, requests=[], damage=True
)
@example(
    seed=2,
    day=FALL_BACK,
    before=1,
    hours=3,
    late_updates=0,
    requests=[("ALLSETS", 0, 1)],
    damage=False,
)
@given(
    seed=st.integers(0, 10_000),
    day=st.sampled_from([SPRING_FORWARD, FALL_BACK, ORDINARY]),
    before=st.integers(0, 2),  # hours of traffic before 01:00 UTC: the DST jump is crossed
    hours=st.integers(3, 5),
    late_updates=st.integers(0, 60),
    requests=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "ALLSETS",
                    "H_AGENT,H_QUEUE-DAY",
                    "H_ID-SUBHOUR",
                    "H_CAMPAIGN-MONTH",
                    "H_I_STATE_RSN-HOUR.Online",
                    "H_QUEUE_ABN-YEAR.Offline",
                ]
            ),
            st.integers(0, 3),
            st.integers(0, 3),
        ),
        max_size=3,
    ),
    damage=st.booleans(),
)
def test_d3_property_random_traffic_and_random_reaggregation(
    make_database: Callable[..., str],
    seed: int,
    day: date,
    before: int,
    hours: int,
    late_updates: int,
    requests: list[tuple[str, int, int]],
    damage: bool,
) -> None:
    """D3 over random traffic (day, length, seed, late updates of earlier calls) and random
    re-aggregation requests, with or without damaged aggregate tables: after the passes,
    every aggregate table equals a recomputation from the facts. Every case has facts, and
    every case's traffic crosses 01:00 UTC: on the DST days, Berlin's jump."""
    idb, mart = make_database(migrated=False), make_database()
    init_idb(make_engine(idb))
    begin = datetime.combine(day, time(1), UTC) - timedelta(hours=before)
    with psycopg.connect(idb, autocommit=True) as conn:
        generate(conn, begin, hours, agents=15, queues=4, rate=300, seed=seed)
    etl(mart, idb)
    with make_engine(mart).connect() as conn:
        facts = conn.execute(sa.text("SELECT count(*) FROM interaction_segment_fact")).scalar()
    assert facts, "a case without facts proves nothing"
    once(mart)
    with psycopg.connect(idb, autocommit=True) as conn:
        generate(
            conn, begin + timedelta(hours=hours), 1, agents=15, queues=4, rate=300, seed=seed + 1
        )
        conn.execute(
            "UPDATE party_segment SET outcome = 'abandoned', agent_id = NULL "
            "WHERE id IN (SELECT id FROM party_segment ORDER BY id LIMIT %s)",
            (late_updates,),
        )
    etl(mart, idb)
    with make_engine(mart).begin() as conn:
        if damage:
            conn.execute(sa.text("UPDATE agg_h_agent_day SET offered = offered + 7"))
            conn.execute(sa.text("DELETE FROM agg_h_queue_subhour"))
        for sets, first, length in requests:
            start = begin.date() + timedelta(days=first - 1)
            text = f"-insertPendingAgg {sets}:{start}:{start + timedelta(days=length)}"
            conn.execute(
                sa.text("INSERT INTO agg_request (params, requested_by) VALUES (:p, 'test')"),
                {"p": json.dumps(parse(text).as_dict())},
            )
        if damage:  # repair what the damage touched, whatever the random requests were
            # (random ones reaching outside DATE_TIME are refused whole, changing nothing: D5)
            first_day, last_day = conn.execute(
                sa.text("SELECT min(local_date), least(max(local_date), :d) FROM date_time"),
                {"d": begin.date() + timedelta(days=2)},
            ).one()
            text = f"-insertPendingAgg ALLSETS:{first_day}:{last_day}"
            conn.execute(
                sa.text("INSERT INTO agg_request (params, requested_by) VALUES (:p, 'test')"),
                {"p": json.dumps(parse(text).as_dict())},
            )
    once(mart)
    assert mismatches(mart) == []
