"""Job_MaintainGIM and Job_UpdateStats against real PostgreSQL (SPEC S4-S6, D2, M7)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa

from gim_tasks.db import mart_tables as mart
from gim_tasks.db.engine import make_engine
from gim_tasks.db.partitions import ensure_partitions, existing_partitions, partition_name
from gim_tasks.jobs import maintain, update_stats
from gim_tasks.jobs.base import JobContext, StopRequested
from gim_tasks.options.values import Options

#: Maintenance reads the calendar date (partitions, retention relative to today).
pytestmark = pytest.mark.date_sensitive
NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # the eve of Europe's spring-forward night


def opts(**texts: str) -> Options:
    stored = {("schedule", "timezone"): "Europe/Berlin"}
    stored.update({(k.split(":")[0], k.split(":")[1]): v for k, v in texts.items()})
    return Options.from_texts(stored, strict=True)


def context(url: str, options: Options | None = None, now: datetime = NOW) -> JobContext:
    return JobContext(
        mart=make_engine(url), idb_urls=[], options=options or opts(), now=lambda: now
    )


def no_calendar(*urls: str) -> None:
    """Start from an empty DATE_TIME (``gim db upgrade`` fills it ahead from the real today)."""
    for url in urls:
        with make_engine(url).begin() as conn:
            conn.execute(sa.text("DELETE FROM date_time"))


def partitions(url: str) -> dict[str, set[str]]:
    with make_engine(url).connect() as conn:
        return {t.name: existing_partitions(conn, t.name) for t in mart.FACTS}


def scalar(url: str, query: str) -> object:
    with make_engine(url).connect() as conn:
        return conn.execute(sa.text(query)).scalar_one()


def test_d2_partitions_ahead_exist_for_every_fact_table_across_dst(database_url: str) -> None:
    maintain.run(context(database_url, opts(**{"gim-etl:partitions-days-ahead": "3"})))
    expected = {date(2026, 3, 27) + timedelta(days=n) for n in range(5)}  # yesterday .. +3
    for table, names in partitions(database_url).items():
        assert names == {partition_name(table, day) for day in expected}
    # A fact for tomorrow (the DST night in Europe/Berlin) always finds its partition.
    with make_engine(database_url).begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO interaction_fact (idb_id, interaction_id, start_ts, date_time_key) "
                "VALUES (1, 1, '2026-03-29 01:30+00', 0), (1, 2, '2026-03-31 23:59+00', 0)"
            )
        )


def test_d2_expired_partitions_are_dropped_whole_and_younger_ones_untouched(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    days = [NOW.date() - timedelta(days=n) for n in (12, 11, 10, 9)]
    with engine.begin() as conn:
        ensure_partitions(conn, "interaction_fact", days)
        for n, day in enumerate(days):
            conn.execute(
                sa.text(
                    "INSERT INTO interaction_fact (idb_id, interaction_id, start_ts, "
                    "date_time_key) "
                    "SELECT 1, g, CAST(:day AS timestamptz) + g * interval '1 second', 0 "
                    "FROM generate_series(1, :rows) g"
                ),
                {"day": f"{day} 00:00+00", "rows": 10 + n},
            )
    ctx = context(database_url, opts(**{"gim-etl:days-to-keep-facts": "10"}))
    maintain.run(ctx)
    names = partitions(database_url)["interaction_fact"]
    assert partition_name("interaction_fact", days[0]) not in names  # 12 days old: dropped
    assert partition_name("interaction_fact", days[1]) not in names  # 11 days old: dropped
    assert {partition_name("interaction_fact", d) for d in days[2:]} <= names
    assert scalar(database_url, "SELECT count(*) FROM interaction_fact") == 12 + 13
    summary = ctx.counts.summary["expired_partitions"]
    assert isinstance(summary, dict) and len(summary["dropped"]) == 2


def test_calendar_filled_ahead_repopulated_on_zone_change_and_custom_calendars(
    database_url: str,
) -> None:
    no_calendar(database_url)
    options = opts(
        **{
            "gim-etl:date-time-max-days-ahead": "10",
            "gim-etl:date-time-extra-time-zones": "Asia/Tokyo",
        }
    )
    maintain.run(context(database_url, options))
    rows = scalar(database_url, "SELECT count(*) FROM date_time")
    assert rows == 11 * 96 + 1  # yesterday to +10 days, 15-minute grain, both ends included
    # S10: the local day of 2026-03-29 in Berlin has 23 hours (92 intervals).
    assert (
        scalar(database_url, "SELECT count(*) FROM date_time WHERE local_date = '2026-03-29'") == 92
    )
    assert (
        scalar(database_url, "SELECT count(*) FROM date_time_extra WHERE calendar = 'Asia/Tokyo'")
        == rows
    )
    changed = opts(
        **{"schedule:timezone": "America/New_York", "gim-etl:date-time-max-days-ahead": "10"}
    )
    ctx = context(database_url, changed)
    maintain.run(ctx)
    assert scalar(database_url, "SELECT count(DISTINCT time_zone) FROM date_time") == 1
    assert (
        scalar(
            database_url,
            f"SELECT local_hour FROM date_time WHERE date_time_key = {int(NOW.timestamp())}",
        )
        == 8
    )  # 12:00 UTC = 08:00 EDT
    assert scalar(database_url, "SELECT count(*) FROM date_time_extra") == 0  # calendar removed
    calendar = ctx.counts.summary["calendar"]
    assert isinstance(calendar, dict) and calendar["rows_repopulated"] == rows


def test_s5_stop_between_steps_then_rerun_equals_one_uninterrupted_run(
    make_database: Callable[..., str],
) -> None:
    stopped, clean = make_database(), make_database()
    no_calendar(stopped, clean)
    ctx = context(stopped)

    def stop_after_first_step(what: str, done: int, total: int | None) -> None:
        if what.startswith("maintenance: calendar"):
            ctx.stop.request("preempted by the ETL cycle (S5)")

    ctx.progress = stop_after_first_step
    with pytest.raises(StopRequested):
        maintain.run(ctx)
    assert scalar(stopped, "SELECT count(*) FROM date_time") > 0  # the committed step stays
    assert all(not names for names in partitions(stopped).values())
    maintain.run(context(stopped))
    maintain.run(context(clean))
    assert partitions(stopped) == partitions(clean)
    query = (
        "SELECT md5(string_agg(concat_ws('|', date_time_key, local_date, local_hour), ',' "
        "ORDER BY date_time_key)) FROM date_time"
    )
    assert scalar(stopped, query) == scalar(clean, query)


def test_retention_purges_only_what_is_old_and_already_loaded(database_url: str) -> None:
    engine = make_engine(database_url)
    old, young = NOW - timedelta(days=40), NOW - timedelta(days=1)
    with engine.begin() as conn:
        for n, (at, seq) in enumerate([(old, 1), (old, 2), (young, 3), (old, 9)]):
            conn.execute(
                sa.text(
                    "INSERT INTO stg_campaign_attempt (idb_id, id, change_xid, load_seq, "
                    "extracted_at) VALUES (1, :id, 1, :seq, :at)"
                ),
                {"id": n, "seq": seq, "at": at},
            )
        conn.execute(
            sa.text("INSERT INTO transform_mark VALUES ('stg_campaign_attempt', 5, now())")
        )
        conn.execute(
            sa.text(
                "INSERT INTO discard (idb_id, source_table, source_id, reason, "
                "payload, discarded_at) VALUES (1, 'x', 1, 'r', '{}', :old), "
                "(1, 'x', 2, 'r', '{}', :young)"
            ),
            {"old": old, "young": young},
        )
        conn.execute(
            sa.text(
                "INSERT INTO job_run (job, trigger, actor, state, ended_at, "
                "created_at) VALUES ('Job_ExtractICON', 'manual', 't', "
                "'Completed', :old, :old), ('Job_ExtractICON', 'manual', 't', "
                "'Completed', :young, :young)"
            ),
            {"old": old - timedelta(days=90), "young": young},
        )
    maintain.run(context(database_url))
    # Old and loaded: gone. Young, or not yet loaded by Transform (seq 9 > mark 5): kept.
    with engine.connect() as conn:
        kept = sorted(
            r[0] for r in conn.execute(sa.text("SELECT load_seq FROM stg_campaign_attempt"))
        )
    assert kept == [3, 9]
    assert scalar(database_url, "SELECT count(*) FROM discard") == 1
    assert scalar(database_url, "SELECT count(*) FROM job_run") == 1


def test_update_stats_analyzes_exactly_the_tables_that_changed(database_url: str) -> None:
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        # Autovacuum must not analyze the table first (it raced this test now and then: the
        # job then rightly found nothing changed).
        conn.execute("ALTER TABLE discard SET (autovacuum_enabled = false)")
        conn.execute("ANALYZE")
        conn.execute(
            "INSERT INTO discard (idb_id, source_table, source_id, reason, payload) "
            "SELECT 1, 't', g, 'r', '{}' FROM generate_series(1, 500) g"
        )
        conn.execute("SELECT pg_stat_force_next_flush()")
    with psycopg.connect(url) as conn:
        before = dict(
            conn.execute("SELECT relname, last_analyze FROM pg_stat_user_tables").fetchall()
        )
    ctx = context(database_url)
    update_stats.run(ctx)
    with psycopg.connect(url) as conn:
        after = dict(
            conn.execute("SELECT relname, last_analyze FROM pg_stat_user_tables").fetchall()
        )
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed == {"discard"}
    tables = ctx.counts.summary["tables"]
    assert isinstance(tables, dict) and tables == {"discard": ["analyze"]}


def test_retention_of_aggregates_below_day(database_url: str) -> None:
    from gim_tasks.aggregate.compute import ensure_tables

    engine = make_engine(database_url)
    old, young = NOW - timedelta(days=900), NOW - timedelta(days=2)
    with engine.begin() as conn:
        ensure_tables(conn)
        for at in (old, young):
            conn.execute(
                sa.text(
                    "INSERT INTO agg_h_queue_subhour (date_time_key, queue_key, "
                    "offered, answered, abandoned, transferred, "
                    "answered_in_service_level, wait_seconds, talk_seconds, "
                    "hold_seconds, wrap_seconds) VALUES (:k, 1, 1, 1, 0, 0, 1, 5, "
                    "60, 0, 10)"
                ),
                {"k": int(at.timestamp()) // 900 * 900},
            )
            for level in ("hour", "day"):
                conn.execute(
                    sa.text(
                        f"INSERT INTO agg_h_queue_{level} (bucket, queue_key, "
                        "offered, answered, abandoned, transferred, "
                        "answered_in_service_level, wait_seconds, talk_seconds, "
                        "hold_seconds, wrap_seconds) VALUES (:b, 1, 1, 1, 0, 0, 1, "
                        "5, 60, 0, 10)"
                    ),
                    {"b": at.replace(tzinfo=None)},
                )
    ctx = context(database_url, opts(**{"gim-etl:days-to-keep-aggregates": "800"}))
    maintain.run(ctx)
    assert scalar(database_url, "SELECT count(*) FROM agg_h_queue_subhour") == 1
    assert scalar(database_url, "SELECT count(*) FROM agg_h_queue_hour") == 1
    assert scalar(database_url, "SELECT count(*) FROM agg_h_queue_day") == 2  # DAY+ kept
    purged = ctx.counts.summary["retention"]["rows_purged"]  # type: ignore[index]
    assert purged["agg_h_queue_subhour"] == 1 and purged["agg_h_queue_hour"] == 1
