"""Alembic migrations and the core constraints they create (issue 3; SPEC S2, S11, R1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gim_tasks.cli.main import main as gim
from gim_tasks.db import migrate
from gim_tasks.db.engine import make_engine
from gim_tasks.db.tables import job_run, metadata


def test_upgrade_brings_empty_database_to_head(make_database: object) -> None:
    engine = make_engine(make_database(migrated=False))  # type: ignore[operator]
    assert migrate.schema_state(engine).current is None
    state = migrate.upgrade(engine)
    assert state.at_head and state.current == migrate.head_revision()


def test_migrated_schema_equals_table_metadata(database_url: str) -> None:
    with make_engine(database_url).connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []


def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    engine = make_engine(database_url)
    assert migrate.downgrade(engine, "base").current is None
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("job_run")
    assert migrate.upgrade(engine).at_head


def test_concurrent_upgrades_from_several_processes_are_serialised(
    make_database: object, redis_url: str
) -> None:
    """Several pods may run the migrate step at once; the advisory lock in env.py serialises
    them, so each revision is applied exactly once and none fails."""
    url = make_database(migrated=False)  # type: ignore[operator]
    env = {**os.environ, "GIM_DATABASE_URL": url, "GIM_REDIS_URL": redis_url}
    gim_script = str(Path(sys.executable).with_name("gim"))
    processes = [
        subprocess.Popen(
            [gim_script, "db", "upgrade"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in processes]
    # The whole error of a failed process (pytest would cut a long assertion message).
    failed = [err for code, err in results if code != 0]
    assert not failed, "\n".join(line for err in failed for line in err.splitlines()[-15:])
    assert migrate.schema_state(make_engine(url)).at_head


def test_upgrades_from_several_threads_of_one_process(make_database: object) -> None:
    """Alembic's proxies are module globals: two threads migrating two databases at once
    raised KeyError: 'config' (the reliability suite's two lanes did) before migrate.py
    serialised its commands per process."""
    import threading

    urls = [make_database(migrated=False) for _ in range(3)]  # type: ignore[operator]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(urls))

    def upgrade(url: str) -> None:
        engine = make_engine(url)
        barrier.wait()
        try:
            migrate.upgrade(engine)
        except BaseException as error:
            errors.append(error)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=upgrade, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert all(migrate.schema_state(make_engine(url)).at_head for url in urls)


def test_db_check_command_exit_codes(
    make_database: object,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gim_tasks.settings import get_settings

    url = make_database(migrated=False)  # type: ignore[operator]
    monkeypatch.setenv("GIM_DATABASE_URL", url)
    monkeypatch.setenv("GIM_REDIS_URL", redis_url)
    get_settings.cache_clear()
    assert gim(["db", "check"]) == 1
    assert "run `gim db upgrade`" in capsys.readouterr().out
    assert gim(["db", "upgrade"]) == 0
    assert gim(["db", "check", "--json"]) == 0
    assert '"at_head": true' in capsys.readouterr().out
    get_settings.cache_clear()


def _insert_run(conn: sa.Connection, **values: object) -> None:
    conn.execute(sa.insert(job_run).values(trigger="scheduled", actor="scheduler", **values))


def test_s2_database_refuses_second_running_run_of_a_job(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.begin() as conn:
        _insert_run(conn, job="Job_ExtractICON", state="Running")
        _insert_run(conn, job="Job_TransformGIM", state="Running")
        _insert_run(conn, job="Job_ExtractICON", state="Completed")
    with (
        pytest.raises(sa.exc.IntegrityError, match="uq_job_run_one_running"),
        engine.begin() as conn,
    ):
        _insert_run(conn, job="Job_ExtractICON", state="Running")


def test_s11_firing_id_starts_at_most_one_run(database_url: str) -> None:
    engine = make_engine(database_url)
    firing = "Job_ExtractICON:2026-11-22T06:30:00+00:00"
    with engine.begin() as conn:
        _insert_run(conn, job="Job_ExtractICON", state="Completed", firing_id=firing)
    with pytest.raises(sa.exc.IntegrityError, match="uq_job_run_firing_id"), engine.begin() as conn:
        _insert_run(conn, job="Job_ExtractICON", state="Scheduled", firing_id=firing)


def test_r1_unknown_run_state_is_refused(database_url: str) -> None:
    with (
        pytest.raises(sa.exc.IntegrityError, match="ck_job_run_state"),
        make_engine(database_url).begin() as conn,
    ):
        _insert_run(conn, job="Job_ExtractICON", state="Paused")


def test_r4_a_stopped_run_without_a_kind_or_with_an_unknown_kind_is_refused(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    with (
        pytest.raises(sa.exc.IntegrityError, match="ck_job_run_stopped_has_kind"),
        engine.begin() as conn,
    ):
        _insert_run(conn, job="Job_ExtractICON", state="Stopped")
    with pytest.raises(sa.exc.IntegrityError, match="ck_job_run_stop_kind"), engine.begin() as conn:
        _insert_run(conn, job="Job_ExtractICON", state="Stopped", stop_kind="bored")
    with engine.begin() as conn:
        _insert_run(conn, job="Job_ExtractICON", state="Stopped", stop_kind="operator")


def test_r4_upgrade_gives_existing_stopped_runs_the_kind_their_reason_names(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    migrate.downgrade(engine, "0008")
    reasons = {
        "aggregation window ended (S7)": "window-end",
        "paused for maintenance; resumes after it (S7)": "maintenance",
        "preempted by the ETL cycle planned at 2026-11-23 06:30 (S5)": "preempted",
        "worker shutting down": "shutdown",
        "stopped by alice": "operator",
        "something else": "terminated",
    }
    with engine.begin() as conn:
        for reason in reasons:
            conn.execute(
                sa.text(
                    "INSERT INTO job_run (job, trigger, actor, state, reason) "
                    "VALUES ('Job_AggregateGIM', 'scheduled', 'scheduler', 'Stopped', :r)"
                ),
                {"r": reason},
            )
    assert migrate.upgrade(engine).at_head
    with engine.connect() as conn:
        kinds = dict(conn.execute(sa.text("SELECT reason, stop_kind FROM job_run")).all())
    assert kinds == reasons


def test_status_functions_cover_every_staging_and_fact_table() -> None:
    """Migration 0013's counting functions name the staging and fact tables of their time: a
    table added to the mart without a migration updating them fails here, not on a status
    page that silently leaves it out."""
    import importlib

    from gim_tasks.db import mart_tables as mart
    from gim_tasks.jobs import transform

    status = importlib.import_module("gim_tasks.db.migrations.versions.0013_status_functions")
    for table in mart.FACTS:
        assert f"'{table.name}'" in status.ETL_COUNTS, table.name
    for spec in transform.FACTS:  # the staging tables Transform keeps a mark for
        assert f"'{spec.source}'" in status.ETL_COUNTS, spec.source
