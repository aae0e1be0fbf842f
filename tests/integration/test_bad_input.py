"""The bad-input corpus (issue 11): every malformed command, option, parameter and account
request gets one clear line naming what is wrong, a non-zero exit code, no traceback, and
changes nothing in the database. (API payloads: test_web_api; malformed source rows:
test_etl's discards; unknown `celery call` names: test_runtime.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from gim_tasks.cli.main import main as gim
from gim_tasks.db.engine import make_engine

#: Malformed re-aggregation parameters and the token each error must name (M4).
BAD_PARAMS = [
    ("-insertPendingAgg", "-insertPendingAgg"),
    ("-insertPendingAgg H_NOPE-DAY:2026-01-01:2026-01-02", "H_NOPE"),
    ("-insertPendingAgg H_AGENT-WEEK:2026-01-01:2026-01-02", "WEEK"),
    ("-insertPendingAgg ALLSETS:2026-02-30:2026-03-01", "2026-02-30"),
    ("-insertPendingAgg ALLSETS:2026-03-02:2026-03-01", "2026-03-01"),
    ("-insertPendingAgg ALLSETS:2026-03-01", "ALLSETS:2026-03-01"),
    ("-insertPendingAgg H_AGENT-DAY.Sometimes:2026-01-01:2026-01-02", "Sometimes"),
    ("-rebuildEverything", "-rebuildEverything"),
]

#: (argv, exit code, text the error line must contain)
CORPUS: list[tuple[list[str], int, str]] = [
    # options: bad values, unknown names, bad combinations are refused before storing
    (["config", "set", "schedule", "etl-frequency", "0"], 2, "integer from 1 to 1440"),
    (["config", "set", "schedule", "etl-frequency", "ten"], 2, "etl-frequency = 'ten'"),
    (["config", "set", "schedule", "timezone", "Mars/Olympus"], 2, "Mars/Olympus"),
    (["config", "set", "schedule", "etl-start-time", "25:00"], 2, "etl-start-time = '25:00'"),
    (["config", "set", "schedule", "etl-start-time", "6.30"], 2, "etl-start-time = '6.30'"),
    (["config", "set", "schedule", "aggregate-schedule", "61 *"], 2, "aggregate-schedule"),
    (["config", "set", "schedule", "export-schedule", "0 0 0 0 0 0"], 2, "export-schedule"),
    (["config", "set", "schedule", "run-export", "maybe"], 2, "run-export = 'maybe'"),
    (["config", "set", "schedule", "no-such-option", "1"], 2, "no-such-option"),
    (["config", "set", "nosection", "timezone", "GMT"], 2, "nosection"),
    (["config", "set", "gim-etl", "days-to-keep-facts", "--", "-3"], 2, "days-to-keep-facts"),
    (["config", "set", "gim-etl", "extract-batch-size", "1e9"], 2, "extract-batch-size"),
    (["config", "set", "gim-export", "output-files-encoding", "klingon-8"], 2, "klingon-8"),
    # re-aggregation parameters (M4): the message names the bad token, on every path
    *[
        (path + ["--params", params], 2, token)
        for params, token in BAD_PARAMS
        for path in (
            ["run", "Job_AggregateGIM"],
            ["run", "Job_AggregateGIM", "--local"],
            ["aggregate", "once"],
        )
    ],
    *[
        (path + ["--params", "-insertPendingAgg ALLSETS:2026-01-01:2026-01-02"], 2, "only Job_")
        for path in (["run", "Job_ExtractICON"], ["run", "Job_ExtractICON", "--local"])
    ],
    # jobs, runs
    (["run", "Job_Nope"], 2, "unknown job 'Job_Nope'"),
    (["run", "Job_Nope", "--local"], 2, "unknown job 'Job_Nope'"),
    (["stop", "999999"], 1, "run 999999 does not exist"),
    (["cancel", "999999"], 1, "run 999999 does not exist"),
    (["jobs", "--category", "Sales"], 1, "unknown category 'Sales'"),
    (["jobs", "--skipped", "--history"], 1, "choose at most one of"),
    # users, tokens, notifications
    (["user", "add", "bad name!", "--password-stdin"], 1, "user name 'bad name!'"),
    (["user", "add", "eve", "--role", "root", "--password-stdin"], 1, "unknown role 'root'"),
    (["user", "remove", "nobody"], 1, "user 'nobody' does not exist"),
    (["token", "create", "nobody"], 1, "user 'nobody' does not exist"),
    (["token", "revoke", "424242"], 1, "token 424242 does not exist"),
    (["notify", "add", "Job_Nope", "a@example.com"], 1, "unknown job 'Job_Nope'"),
    (["notify", "add", "Job_ExportGIM", "not-an-address"], 1, "neither a user nor"),
    (
        ["notify", "add", "Job_ExportGIM", "a@example.com", "--no-on-success", "--no-on-error"],
        1,
        "send on error",
    ),
    # schedule
    (["schedule", "plan", "--start", "2026-13-01"], 1, "--start '2026-13-01'"),
    (["schedule", "next", "--now", "2026-11-22T10:00"], 1, "no UTC offset"),
]

TABLES = (
    "option_value",
    "option_change",
    "job_run",
    "agg_request",
    "web_user",
    "api_token",
    "notification_subscription",
)


@pytest.mark.parametrize(
    ("argv", "code", "expected"), CORPUS, ids=[" ".join(c[0])[:60] for c in CORPUS]
)
def test_bad_input_gets_one_clear_line_and_changes_nothing(
    gim_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    code: int,
    expected: str,
) -> None:
    monkeypatch.setattr("sys.stdin", _Stdin("a-good-password\n"))
    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    before = _counts(engine)
    assert gim(argv) == code
    captured = capsys.readouterr()
    text = captured.err + captured.out
    assert expected in text, text
    assert "Traceback" not in text
    # A malformed request is refused at once: no run recorded, nothing queued, nothing started
    # (a request refused by a rule is recorded as Rejected: test_c2_… below).
    assert _counts(engine) == before
    engine.dispose()


class _Stdin:
    def __init__(self, text: str) -> None:
        self.lines = iter(text.splitlines(keepends=True))

    def readline(self) -> str:
        return next(self.lines, "")


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in TABLES
        }


def test_config_import_of_a_bad_file_stores_nothing(
    gim_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.ini"
    bad.write_text("[schedule]\ntimezone = Europe/Berlin\netl-frequency = 0\n[nope]\nx = 1\n")
    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    before = _counts(engine)
    assert gim(["config", "import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "etl-frequency" in err and "Traceback" not in err
    assert _counts(engine) == before
    engine.dispose()


def test_c2_a_failing_configuration_check_rejects_manual_runs_naming_the_item(
    gim_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad combination of options is stored (each value is valid) but the configuration
    check fails, and then no run may start (C2): the refusal names the failing item."""
    assert gim(["config", "set", "schedule", "maintain-start-time", "12:00"]) == 0
    capsys.readouterr()
    assert gim(["run", "Job_ExtractICON"]) == 1
    out = capsys.readouterr().out
    assert "Rejected: configuration check failed: [schedule] maintain-start-time" in out
    assert gim(["run", "Job_ExtractICON", "--local"]) == 1
    assert "configuration check failed" in capsys.readouterr().out
