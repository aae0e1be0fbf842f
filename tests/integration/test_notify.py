"""Notification mails (SPEC A3) through a real SMTP server (aiosmtpd) and real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import Smtp, insert_run

from devtools.localstack import free_port
from gim_tasks.db.engine import make_engine
from gim_tasks.db.tables import job_run, notification
from gim_tasks.errors import GimError
from gim_tasks.jobs.base import Counts
from gim_tasks.monitor import notify
from gim_tasks.runtime.runs import finish_run
from gim_tasks.settings import get_settings
from gim_tasks.web import auth


@pytest.fixture
def smtp(gim_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Smtp]:
    server = Smtp(free_port())
    monkeypatch.setenv("GIM_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("GIM_SMTP_PORT", str(server.port))
    monkeypatch.setenv("GIM_WEB_BASE_URL", "https://gim.example.com")
    get_settings.cache_clear()
    yield server
    server.stop()


@pytest.fixture
def engine(gim_env: dict[str, str]) -> Iterator[sa.Engine]:
    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    yield engine
    engine.dispose()


def _run(
    engine: sa.Engine, job: str, state: str, warnings: int = 0, error: str | None = None
) -> int:
    """A run that starts and ends as a worker would record it."""
    with engine.begin() as conn:
        run_id = insert_run(
            conn, job=job, trigger="manual", actor="ops", state="Running", started_at=sa.func.now()
        )
    counts = Counts(read=1234, written=1200, discarded=34, warnings=warnings)
    assert finish_run(engine, run_id, state, counts, error=error)
    return int(run_id)


def _mails(engine: sa.Engine, run_id: int) -> list[sa.Row]:
    with engine.connect() as conn:
        return list(
            conn.execute(sa.select(notification).where(notification.c.run_id == run_id)).all()
        )


def test_a3_success_warnings_and_error_mails(smtp: Smtp, engine: sa.Engine) -> None:
    smtp.start()
    auth.add_user(engine, "olga", "viewer", "password-1", "t", email="olga@example.com")
    notify.add_subscription(engine, "Job_ExtractICON", "ops@example.com", True, True, "admin")
    notify.add_subscription(engine, "Job_ExtractICON", "olga", False, True, "admin")
    settings = get_settings()

    warned = _run(engine, "Job_ExtractICON", "Completed with warnings", warnings=3)
    assert [m.recipient for m in _mails(engine, warned)] == ["ops@example.com"]
    assert notify.deliver(engine, settings, warned) == (1, 0)
    ((to, mail),) = smtp.inbox.messages
    assert to == ["ops@example.com"]
    assert mail["Subject"] == (
        f"[gim-tasks] Job_ExtractICON run {warned}: Completed with warnings (3 warnings)"
    )
    body = mail.get_content()
    assert "read 1,234, written 1,200, discarded 34" in body
    assert f"https://gim.example.com/runs/{warned}" in body
    assert "Started:" in body and "Ended:" in body

    failed = _run(engine, "Job_ExtractICON", "Failed", error="OperationalError: server closed")
    assert notify.deliver(engine, settings, failed) == (2, 0)
    latest = {tuple(to): mail for to, mail in smtp.inbox.messages[1:]}
    assert set(latest) == {("ops@example.com",), ("olga@example.com",)}
    assert "Failed" in latest[("olga@example.com",)]["Subject"]
    assert "OperationalError: server closed" in latest[("olga@example.com",)].get_content()

    quiet = _run(engine, "Job_MaintainGIM", "Completed")  # nobody subscribed
    assert _mails(engine, quiet) == []
    assert notify.deliver(engine, settings, warned) == (0, 0)  # sent once, never again
    assert len(smtp.inbox.messages) == 3


def test_a3_smtp_down_then_up_retries_and_never_changes_the_run(
    smtp: Smtp, engine: sa.Engine
) -> None:
    notify.add_subscription(engine, "Job_TransformGIM", "ops@example.com", True, False, "admin")
    run_id = _run(engine, "Job_TransformGIM", "Completed")
    settings = get_settings()
    assert notify.deliver(engine, settings, run_id) == (0, 1)  # nobody listens on the port
    (mail,) = _mails(engine, run_id)
    assert mail.state == "pending" and mail.attempts == 1
    assert "ConnectionRefusedError" in mail.last_error
    assert mail.next_attempt_at > datetime.now(UTC) + timedelta(seconds=20)  # back-off
    with engine.connect() as conn:
        state = conn.execute(sa.select(job_run.c.state).where(job_run.c.id == run_id)).scalar()
    assert state == "Completed"

    smtp.start()
    assert notify.deliver(engine, settings) == (0, 0)  # not due yet
    assert notify.deliver(engine, settings, now=datetime.now(UTC) + timedelta(minutes=2)) == (1, 0)
    (mail,) = _mails(engine, run_id)
    assert (mail.state, mail.attempts) == ("sent", 2)
    assert len(smtp.inbox.messages) == 1


def test_a3_relay_claims_overdue_mails_once(smtp: Smtp, engine: sa.Engine) -> None:
    notify.add_subscription(engine, "Job_ExportGIM", "ops@example.com", False, True, "admin")
    run_id = _run(engine, "Job_ExportGIM", "Stopped")
    now = datetime.now(UTC)
    assert notify.due_runs(engine, now) == []  # a fresh mail is the worker's to send
    later = now + timedelta(minutes=2)
    assert notify.due_runs(engine, later) == [run_id]
    assert notify.due_runs(engine, later + timedelta(seconds=1)) == []  # claimed


def test_a3_subscription_rules(engine: sa.Engine, gim_env: dict[str, str]) -> None:
    auth.add_user(engine, "noemail", "viewer", "password-1", "t")
    with pytest.raises(GimError, match="unknown job 'Job_X'"):
        notify.add_subscription(engine, "Job_X", "a@example.com", True, True, "t")
    with pytest.raises(GimError, match="neither a user nor an e-mail"):
        notify.add_subscription(engine, "Job_ExportGIM", "nobody", True, True, "t")
    with pytest.raises(GimError, match="has no e-mail address"):
        notify.add_subscription(engine, "Job_ExportGIM", "noemail", True, True, "t")
    with pytest.raises(GimError, match="success, send on error, or both"):
        notify.add_subscription(engine, "Job_ExportGIM", "a@example.com", False, False, "t")
    first = notify.add_subscription(engine, "Job_ExportGIM", "a@example.com", True, True, "t")
    again = notify.add_subscription(engine, "Job_ExportGIM", "a@example.com", False, True, "u")
    assert first == again
    (row,) = notify.list_subscriptions(engine)
    assert (row["on_success"], row["on_error"], row["created_by"]) == (False, True, "u")


@pytest.mark.parametrize(
    ("stop_kind", "mailed"),
    [
        ("window-end", []),  # R4: planned stops are successes, mailed to nobody
        ("maintenance", []),
        ("preempted", []),
        ("operator", ["errors@example.com"]),  # neither success nor failure: error subscribers
        ("shutdown", ["errors@example.com"]),  # failures
        ("terminated", ["errors@example.com"]),
    ],
)
def test_r4_a3_planned_stops_send_no_mail_other_stops_go_to_error_subscribers(
    engine: sa.Engine, stop_kind: str, mailed: list[str]
) -> None:
    notify.add_subscription(engine, "Job_AggregateGIM", "errors@example.com", False, True, "a")
    notify.add_subscription(engine, "Job_AggregateGIM", "all@example.com", True, False, "a")
    with engine.begin() as conn:
        run_id = insert_run(
            conn,
            job="Job_AggregateGIM",
            trigger="scheduled",
            actor="scheduler",
            state="Running",
            started_at=sa.func.now(),
        )
    assert finish_run(engine, run_id, "Stopped", Counts(), stop_kind=stop_kind, ended_by="ops")
    assert [m.recipient for m in _mails(engine, run_id)] == mailed


def test_a3_an_address_no_mail_can_carry_is_refused_and_never_holds_up_the_others(
    smtp: Smtp, engine: sa.Engine
) -> None:
    """Issue 41: a line feed in an address is refused on every path that stores one; an
    address stored before that (a user's e-mail) fails on its own row, recorded, and the
    mails after it are sent."""
    bad = '"ops\nBcc: x@evil.example"@example.com'
    with pytest.raises(GimError, match="control character"):
        auth.add_user(engine, "mallory", "viewer", "password-1", "t", email=bad)
    with pytest.raises(GimError, match="neither a user nor an e-mail address"):
        notify.add_subscription(engine, "Job_ExtractICON", bad, True, True, "admin")
    assert notify.check_address(" ada@example.com ") == "ada@example.com"
    assert notify.check_address("admin@localhost") == "admin@localhost"  # ./dev up's demo user
    for wrong in ("ada", "ada@example", "a b@example.com", "@example.com", "ada@@example.com"):
        with pytest.raises(GimError):
            notify.check_address(wrong)
    # A user whose address was stored before the check: subscribed first, mailed first.
    auth.add_user(engine, "legacy", "viewer", "password-1", "t")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE web_user SET email = :e WHERE name = 'legacy'"), {"e": bad})
    notify.add_subscription(engine, "Job_ExtractICON", "legacy", True, True, "admin")
    notify.add_subscription(engine, "Job_ExtractICON", "ops@example.com", True, True, "admin")
    smtp.start()
    run_id = _run(engine, "Job_ExtractICON", "Completed")
    notify.deliver(engine, get_settings(), run_id)
    rows = {m.recipient: m for m in _mails(engine, run_id)}
    assert rows["ops@example.com"].state == "sent"
    assert rows["legacy"].state == "failed" and rows["legacy"].attempts == 1
    assert rows["legacy"].last_error
    assert [to for to, _ in smtp.inbox.messages] == [["ops@example.com"]]


def test_o3_one_alert_that_cannot_be_composed_never_holds_up_the_alerts_after_it(
    smtp: Smtp, engine: sa.Engine
) -> None:
    """Issue 41: in the alert loop (lowest id first), a row whose mail cannot be composed is
    recorded failed and the next alerts go out."""
    from gim_tasks.monitor import alerts

    bad = '"ops\nBcc: x@evil.example"@example.com'
    auth.add_user(engine, "legacy", "viewer", "password-1", "t")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE web_user SET email = :e WHERE name = 'legacy'"), {"e": bad})
        incident = conn.execute(
            sa.text(
                "INSERT INTO incident (job, condition, detail) VALUES "
                "('Job_ExtractICON', 'failure', 'boom') RETURNING id"
            )
        ).scalar_one()
        for target in ("legacy", "ops@example.com"):
            conn.execute(
                sa.text(
                    "INSERT INTO alert (incident_id, event, channel, target) "
                    "VALUES (:i, 'opened', 'mail', :t)"
                ),
                {"i": incident, "t": target},
            )
    smtp.start()
    assert alerts.deliver(engine, get_settings()) == (1, 1)
    with engine.connect() as conn:
        states = dict(conn.execute(sa.text("SELECT target, state FROM alert")).all())
        error = conn.execute(
            sa.text("SELECT last_error FROM alert WHERE target = 'legacy'")
        ).scalar_one()
    assert states == {"legacy": "failed", "ops@example.com": "sent"} and error
    assert [to for to, _ in smtp.inbox.messages] == [["ops@example.com"]]
