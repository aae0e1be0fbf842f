"""Options stored in PostgreSQL with a change log; set/import/export/check through the CLI
(SPEC §2, C1, M8)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from gim_tasks.cli.main import main as gim
from gim_tasks.db.engine import make_engine
from gim_tasks.db.tables import option_change, option_value
from gim_tasks.options import store
from gim_tasks.options.registry import OptionError


@pytest.fixture
def engine(gim_env: dict[str, str]) -> sa.Engine:
    return make_engine(gim_env["GIM_DATABASE_URL"])


def rows(engine: sa.Engine, table: sa.Table) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(table)).all()]


def test_set_stores_value_and_logs_who_old_and_new(engine: sa.Engine) -> None:
    update = store.set_option(engine, "schedule", "etl-frequency", " 15 ", "alice")
    assert (update.old, update.new) == ("30", "15")
    with engine.connect() as conn:
        options = store.load_options(conn)
        change = conn.execute(sa.select(option_change)).one()
    assert options.get("schedule", "etl-frequency") == 15
    assert options.changes[("schedule", "etl-frequency")].actor == "alice"
    assert (change.old_value, change.new_value, change.changed_by) == ("30", "15", "alice")
    assert change.changed_at.tzinfo is not None


@pytest.mark.parametrize(
    ("section", "name", "value"),
    [
        ("schedule", "etl-frequency", "0"),
        ("schedule", "no-such-option", "1"),
        ("nowhere", "etl-frequency", "5"),
    ],
)
def test_invalid_set_stores_nothing(engine: sa.Engine, section: str, name: str, value: str) -> None:
    store.set_option(engine, "schedule", "etl-frequency", "20", "alice")
    before = (rows(engine, option_value), rows(engine, option_change))
    with pytest.raises(OptionError):
        store.set_option(engine, section, name, value, "bob")
    assert (rows(engine, option_value), rows(engine, option_change)) == before


def test_import_is_all_or_nothing(engine: sa.Engine, tmp_path: Path) -> None:
    bad = "[schedule]\ntimezone = Europe/Berlin\netl-frequency = 99999\n"
    with pytest.raises(OptionError, match="nothing imported, 1 problem"):
        store.import_options(engine, bad, "alice", "bad.ini")
    assert rows(engine, option_value) == [] and rows(engine, option_change) == []
    good = "[schedule]\ntimezone = Europe/Berlin\netl-frequency = 20\n[gim-export]\nmax-retries=5\n"
    updates = store.import_options(engine, good, "alice", "good.ini")
    assert [str(u) for u in updates] == [
        "[schedule] timezone: GMT -> Europe/Berlin",
        "[schedule] etl-frequency: 30 -> 20",
        "[gim-export] max-retries: 3 -> 5",
    ]
    assert len(rows(engine, option_change)) == 3


def test_concurrent_changes_are_serialised_in_the_log(engine: sa.Engine) -> None:
    """The advisory lock makes each logged old value the value really replaced."""
    values = [str(v) for v in range(10, 30)]
    threads = [
        threading.Thread(
            target=store.set_option, args=(engine, "schedule", "etl-frequency", v, f"user{v}")
        )
        for v in values
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with engine.connect() as conn:
        log = conn.execute(sa.select(option_change).order_by(option_change.c.id)).all()
        final = store.load_options(conn).text("schedule", "etl-frequency")
    assert len(log) == len(values)
    assert log[0].old_value == "30"
    assert all(log[i].old_value == log[i - 1].new_value for i in range(1, len(log)))
    assert final == log[-1].new_value


def test_cli_set_show_export_import_round_trip(
    gim_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gim(["config", "set", "schedule", "timezone", "Asia/Tokyo", "--actor", "carol"]) == 0
    assert "[schedule] timezone: GMT -> Asia/Tokyo" in capsys.readouterr().out
    assert gim(["config", "set", "schedule", "etl-frequency", "abc"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "error: [schedule] etl-frequency = 'abc' is invalid: allowed is an "
        "integer from 1 to 1440 (minutes)"
    )
    exported = tmp_path / "site.ini"
    assert gim(["config", "export", "-o", str(exported)]) == 0
    assert "timezone = Asia/Tokyo" in exported.read_text()
    assert gim(["config", "unset", "schedule", "timezone"]) == 0
    assert gim(["config", "import", str(exported)]) == 0
    capsys.readouterr()
    assert gim(["config", "show", "schedule", "--json"]) == 0
    shown = {row["option"]: row for row in json.loads(capsys.readouterr().out)}
    assert shown["timezone"]["value"] == "Asia/Tokyo"
    assert shown["etl-frequency"] == {
        "section": "schedule",
        "option": "etl-frequency",
        "value": "30",
        "default": "30",
        "changed_by": None,
    }


def test_cli_check_reports_errors_with_items_and_exit_code(
    gim_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gim(["config", "check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["ok"], report["errors"]) == (True, [])
    assert [w["item"] for w in report["warnings"]] == ["[gim-etl] days-to-keep-aggregates"]
    assert gim(["config", "set", "schedule", "maintain-start-time", "12:00"]) == 0
    capsys.readouterr()
    blocker = Path(gim_env["GIM_OUTPUT_DIRECTORY"]) / "not-a-directory"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("")
    assert gim(["config", "set", "gim-export", "output-directory", str(blocker / "x")]) == 0
    capsys.readouterr()
    assert gim(["config", "check", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [e["item"] for e in report["errors"]] == ["[schedule] maintain-start-time"]
    assert [w["item"] for w in report["warnings"]] == [
        "[gim-etl] days-to-keep-aggregates",
        "[gim-export] output-directory",
    ]
    assert gim(["config", "set", "schedule", "run-export", "true"]) == 0
    capsys.readouterr()
    assert gim(["config", "check", "--json"]) == 1
    errors = [e["item"] for e in json.loads(capsys.readouterr().out)["errors"]]
    assert errors == ["[schedule] maintain-start-time", "[gim-export] output-directory"]


def test_cli_check_names_unreachable_redis(
    gim_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from devtools.localstack import free_port
    from gim_tasks.settings import get_settings

    monkeypatch.setenv("GIM_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    get_settings.cache_clear()
    assert gim(["config", "check", "--json"]) == 1
    assert [e["item"] for e in json.loads(capsys.readouterr().out)["errors"]] == ["Redis"]


def test_cli_schedule_next_uses_stored_options(
    gim_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert gim(["config", "set", "schedule", "timezone", "America/New_York"]) == 0
    capsys.readouterr()
    assert gim(["schedule", "next", "--now", "2026-11-23T12:00+00:00", "--json"]) == 0
    extract = json.loads(capsys.readouterr().out)[0]
    assert extract["next_run"] == "2026-11-23T07:30:00-05:00"
    assert extract["schedule"].endswith(", America/New_York")


def test_c1_retention_that_would_purge_unexported_facts_warns(gim_env: dict[str, str]) -> None:
    from datetime import UTC, datetime

    from gim_tasks.runtime.health import check_retention
    from gim_tasks.settings import get_settings

    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    now = datetime(2026, 11, 23, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO export_mark VALUES (1, '2026-10-01 00:00+00', 'c', now())")
        )
        options = store.load_options(conn)
    assert check_retention(options, get_settings(), now) == []  # export is off
    store.set_option(engine, "schedule", "run-export", "true", "t")
    store.set_option(engine, "gim-etl", "days-to-keep-facts", "30", "t")
    with engine.connect() as conn:
        options = store.load_options(conn)
    findings = check_retention(options, get_settings(), now)
    assert [(f.level, f.item) for f in findings] == [("warning", "[gim-etl] days-to-keep-facts")]
    assert "2026-10-01" in findings[0].message
    store.set_option(engine, "gim-etl", "days-to-keep-facts", "90", "t")
    with engine.connect() as conn:
        assert check_retention(store.load_options(conn), get_settings(), now) == []


def test_gim_option_file_from_the_readme_imports_with_notes(
    engine: sa.Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gim config import` of the README's GIM sample: exit 0, each GIM-only option reported
    and not stored, PST stored as America/Los_Angeles with a warning, [date-time] moved."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    match = re.search(r"<!-- gim-sample-options -->\n```ini\n(.*?)```", readme, re.S)
    assert match
    path = tmp_path / "gim-options.ini"
    path.write_text(match.group(1))
    capsys.readouterr()
    assert gim(["config", "import", str(path), "--actor", "migration"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("is not used by gim-tasks") == 5
    assert "warning: [schedule] timezone: GIM's (Java's) PST is America/Los_Angeles" in printed
    from gim_tasks.options.values import Options, read_ini

    values = read_ini(match.group(1)).values
    changes = sum(Options.defaults().texts[key] != text for key, text in values.items())
    assert changes == 6 and f"imported {changes} change(s)" in printed  # the rest are defaults
    stored = {(row[0], row[1]): row[2] for row in rows(engine, option_value)}
    assert stored[("schedule", "timezone")] == "America/Los_Angeles"
    assert stored[("gim-etl", "date-time-min-days-ahead")] == "120"
    assert not {name for _, name in stored} & {"on-demand-migration", "first-day-of-week"}
    assert len(rows(engine, option_change)) == changes
    # An unknown name still refuses the whole file, naming the closest known name.
    path.write_text(match.group(1) + "thread-pool-sise = 3\n")  # in the last section
    assert gim(["config", "import", str(path)]) == 2
    assert "did you mean thread-pool-size?" in capsys.readouterr().err
    assert len(rows(engine, option_change)) == changes
