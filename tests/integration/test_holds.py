"""Operators' holds on the plan (issue 34, SPEC P1-P3, P5) through the beat's tick on real
PostgreSQL and Redis at chosen instants: pause (with until, global, drain), skip one firing,
blackout windows, pause on failure; the watchdog judges held firings without an alarm; every
path refuses bad input naming what is allowed."""

from __future__ import annotations

import json
from datetime import date

import pytest
import sqlalchemy as sa

from gim_tasks.cli.main import main as gim
from gim_tasks.monitor import watchdog
from gim_tasks.options import store
from gim_tasks.runtime import holds
from gim_tasks.schedule.holds import Blackout
from gim_tasks.settings import get_settings
from tests.integration.beat_harness import TZ, Beat, at

EXTRACT, EXPORT, MAINTAIN = "Job_ExtractICON", "Job_ExportGIM", "Job_MaintainGIM"


@pytest.fixture
def beat(gim_env: dict[str, str]) -> Beat:
    beat = Beat(gim_env)
    store.set_option(beat.engine, "schedule", "etl-frequency", "1", "test")
    store.set_option(beat.engine, "schedule", "run-maintain", "false", "test")
    beat.tick("2026-11-23 06:58:00")  # the scheduler's epoch; the ledger is planned
    for run in beat.rows(EXTRACT) + beat.rows("Job_UpdateStats"):
        beat.end(run.id, "Cancelled")  # no worker here: the catch-up runs end at once
    return beat


def _verdicts(beat: Beat, job: str) -> list[tuple[str, str | None]]:
    with beat.engine.connect() as conn:
        return [
            (row.planned_at.astimezone(TZ).strftime("%H:%M"), row.verdict)
            for row in conn.execute(
                sa.text(
                    "SELECT planned_at, verdict FROM firing WHERE job = :j AND "
                    "planned_at BETWEEN :a AND :b ORDER BY planned_at"
                ),
                {"j": job, "a": at("2026-11-23 07:00:00"), "b": at("2026-11-23 07:06:00")},
            )
        ]  # fmt: skip


def _incidents(beat: Beat) -> list[tuple[str, str, bool]]:
    with beat.engine.connect() as conn:
        return [
            (row.job, row.condition, row.resolved_at is not None)
            for row in conn.execute(sa.text("SELECT * FROM incident ORDER BY id"))
        ]


def test_p1_paused_etl_is_judged_paused_without_alarm_and_until_resumes_within_a_tick(
    beat: Beat,
) -> None:
    """ETL every minute, paused for three: its slots are `paused` (by the beat's tick, and by
    the watchdog for a slot the beat never reached), no missed or late incident, and the tick
    at `until` resumes it: the next slot launches on time."""
    store.set_option(beat.engine, "monitor", "grace-seconds", "30", "test")
    holds.pause(
        beat.engine, EXTRACT, "IDB upgrade", "alice", until=at("2026-11-23 07:03:00"),
        now=at("2026-11-23 06:59:00"),
    )  # fmt: skip
    beat.tick("2026-11-23 07:00:01")
    beat.tick("2026-11-23 07:01:01")
    # 07:02: no tick (a beat restart); the watchdog finds the slot undecided past its grace.
    watchdog.check(beat.engine, beat.redis, get_settings(), now=at("2026-11-23 07:02:59"))
    beat.tick("2026-11-23 07:03:00")  # until: resumed at this tick, and its slot launches
    beat.tick("2026-11-23 07:04:01")
    assert _verdicts(beat, EXTRACT)[:5] == [
        ("07:00", "paused"),
        ("07:01", "paused"),
        ("07:02", "paused"),
        ("07:03", "on-time"),
        ("07:04", "held"),  # the 07:03 cycle is still running (no worker here): S1
    ]
    skipped = [r for r in beat.rows(EXTRACT) if r.state == "Rejected"]
    assert skipped and all(r.reason == "paused by alice: IDB upgrade (P1)" for r in skipped)
    # One `paused` incident: opened by the pause, resolved by its end (the one notice); no
    # missed or late incident.
    assert _incidents(beat) == [(EXTRACT, "paused", True)]
    with beat.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM job_pause")).scalar_one() == 0


def test_p1_a_global_pause_keeps_each_jobs_own_and_manual_starts_stay_allowed(
    beat: Beat, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gim(["pause", EXPORT, "--reason", "month-end close", "--actor", "bob"]) == 0
    assert gim(["pause", "--all", "--reason", "network work", "--actor", "carol"]) == 0
    beat.tick("2026-11-23 07:00:01")
    assert _verdicts(beat, EXTRACT)[0] == ("07:00", "paused")
    assert beat.rows(EXTRACT)[-1].reason == "paused by carol: network work (P1)"
    assert gim(["resume", "--all", "--actor", "carol"]) == 0
    capsys.readouterr()
    assert gim(["holds", "--json"]) == 0
    pauses = json.loads(capsys.readouterr().out)["pauses"]
    assert [(p["job"], p["reason"]) for p in pauses] == [(EXPORT, "month-end close")]
    beat.tick("2026-11-23 07:01:01")
    assert _verdicts(beat, EXTRACT)[1] == ("07:01", "on-time")
    # A manual start of the paused job is allowed and says it is paused.
    capsys.readouterr()
    assert gim(["run", EXPORT, "--force", "--actor", "bob"]) == 0
    said = capsys.readouterr().out
    assert "Job_ExportGIM is paused by bob: month-end close" in said, said
    # Resuming a job that is not paused names what is.
    assert gim(["resume", EXTRACT]) == 1
    assert "Job_ExtractICON is not paused; paused: Job_ExportGIM" in capsys.readouterr().err


def test_p2_skip_one_future_firing_and_refuse_a_past_or_unplanned_one(
    beat: Beat, capsys: pytest.CaptureFixture[str]
) -> None:
    options = store.load_options(beat.engine.connect()).schedule()
    fid = holds.skip(
        beat.engine, options, EXTRACT, "known bad source data", "dan",
        at=at("2026-11-23 07:01:00"), now=at("2026-11-23 06:59:00"),
    )  # fmt: skip
    assert fid == "Job_ExtractICON:2026-11-23T06:01:00+00:00"
    beat.tick("2026-11-23 07:00:01")
    beat.tick("2026-11-23 07:01:01")
    beat.tick("2026-11-23 07:02:01")
    assert _verdicts(beat, EXTRACT)[:3] == [
        ("07:00", "on-time"),
        ("07:01", "operator-skip"),
        ("07:02", "held"),  # the 07:00 cycle still runs (no worker here): S1
    ]
    with pytest.raises(Exception, match=r"no future firing .* next planned firings"):
        holds.skip(
            beat.engine, options, EXTRACT, "too late", "dan", at=at("2026-11-23 06:00:00"),
            now=at("2026-11-23 07:02:30"),
        )  # fmt: skip
    with pytest.raises(Exception, match="already skipped"):
        holds.skip(
            beat.engine, options, EXTRACT, "again", "dan", firing=fid,
            now=at("2026-11-23 06:59:00"),
        )  # fmt: skip


def test_p3_a_weekly_blackout_holds_the_jobs_it_names_and_spares_maintenance(
    beat: Beat, capsys: pytest.CaptureFixture[str]
) -> None:
    # 2026-11-23 is a Monday.
    holds.add_blackout(
        beat.engine,
        Blackout("monday-night", "weekly", "backup window", weekly="Mon 07:01-Mon 07:03"),
        "erin",
    )
    # Shown ahead: Next Run is the next firing that will really run; the plan marks the held.
    capsys.readouterr()
    assert gim(["schedule", "next", "--now", "2026-11-23T07:00:30+01:00", "--json"]) == 0
    rows = {row["job"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[EXTRACT]["next_run"] == "2026-11-23T07:03:00+01:00"
    assert gim(["schedule", "plan", "--start", "2026-11-23T07:00", "--json"]) == 0
    held = {e["at"][11:16]: e.get("held") for e in json.loads(capsys.readouterr().out)
            if e["job"] == EXTRACT and e["at"] < "2026-11-23T07:04"}  # fmt: skip
    assert held == {
        "07:00": None,
        "07:01": "blackout: in blackout 'monday-night': backup window (P3)",
        "07:02": "blackout: in blackout 'monday-night': backup window (P3)",
        "07:03": None,
    }
    for minute in range(0, 5):
        beat.tick(f"2026-11-23 07:0{minute}:01")
    verdicts = dict(_verdicts(beat, EXTRACT))
    assert [verdicts[m] for m in ("07:01", "07:02")] == ["blackout", "blackout"]
    assert verdicts["07:00"] != "blackout" and verdicts["07:03"] != "blackout"
    reasons = {r.reason for r in beat.rows(EXTRACT) if r.state == "Rejected"}
    assert "in blackout 'monday-night': backup window (P3)" in reasons


def test_p5_a_job_failing_three_times_pauses_itself_with_one_alert(beat: Beat) -> None:
    store.set_option(beat.engine, "schedule", "pause-on-failure", f"{EXPORT}=3", "test")
    runs = []
    for _ in range(3):
        runs.append(beat.run(EXPORT, "manual"))
        beat.end(runs[-1], "Failed")
        if len(runs) == 2:
            beat.tick("2026-11-23 07:00:01")
            assert _incidents(beat) == []  # two failures: not yet
    beat.tick("2026-11-23 07:01:01")
    beat.tick("2026-11-23 07:02:01")
    assert _incidents(beat) == [(EXPORT, "paused", False)]
    listed = holds.listing(beat.engine)["pauses"]
    assert [(p["job"], p["source"], p["reason"]) for p in listed] == [
        (EXPORT, "failures", f"3 consecutive failures (last: run {runs[2]})")
    ]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["pause", EXTRACT, "--reason", "  "], "a reason is required"),
        (["pause", "Job_Nope", "--reason", "x"], "unknown job 'Job_Nope'; jobs are"),
        (["pause", "Job_TransformGIM", "--reason", "x"], "pause Job_ExtractICON"),
        (["pause", "--reason", "x"], "name one job, or --all"),
        (["pause", EXTRACT, "--reason", "x", "--until", "2020-01-01T00:00+00:00"],
         "is not in the future"),
        (["pause", EXTRACT, "--reason", "x", "--until", "tomorrow"], "is not an ISO-8601"),
        (["skip", EXTRACT, "--reason", "x"], "--at INSTANT or --firing FIRING_ID"),
        (["skip", EXTRACT, "--reason", "x", "--firing", " "], "--at INSTANT or --firing"),
        (["blackout", "add", "w", "--reason", "x", "--weekly", "Sat 25:00-Sun 06:00"],
         "25:00 is not a time HH:MM"),
        (["blackout", "add", "w", "--reason", "x", "--weekly", "Caturday"],
         "DAY one of Mon Tue Wed Thu Fri Sat Sun"),
        (["blackout", "add", "w", "--reason", "x", "--month-end", "40"], "1 to 27"),
        (["blackout", "add", "w", "--reason", "x", "--from", "2026-12-24T18:00"],
         "needs --from and --to"),
        (["blackout", "add", "w", "--reason", "x", "--month-end", "2", "--jobs", "Job_X"],
         "unknown job(s) Job_X"),
        (["blackout", "remove", "nothing"], "no blackout named 'nothing'"),
    ],
)  # fmt: skip
def test_p1_p3_bad_input_is_refused_naming_what_is_allowed(
    gim_env: dict[str, str], capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    assert gim(args) != 0
    err = capsys.readouterr().err
    assert said in err, err
    with Beat(gim_env).engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT (SELECT count(*) FROM job_pause) + (SELECT count(*) FROM blackout)")
        ).scalar_one()
    assert stored == 0


def test_p4_a_run_planned_at_a_set_time_is_admitted_at_its_instant_once_and_judged(
    beat: Beat,
) -> None:
    from gim_tasks.runtime import run_at

    fid = run_at.plan_run(
        beat.engine, MAINTAIN, at("2026-11-23 07:02:00"), "index rebuild", "frank",
        now=at("2026-11-23 06:59:00"),
    )  # fmt: skip
    assert fid == "at:Job_MaintainGIM:2026-11-23T06:02:00+00:00"
    beat.tick("2026-11-23 07:01:01")
    assert beat.rows(MAINTAIN) == []  # not before its instant
    beat.tick("2026-11-23 07:02:01")
    beat.tick("2026-11-23 07:02:02")  # a second tick (or beat) starts it no second time
    rows = beat.rows(MAINTAIN)
    assert [(r.firing_id, r.trigger, r.actor) for r in rows] == [(fid, "manual", "frank")]
    with beat.engine.connect() as conn:
        verdict = conn.execute(
            sa.text("SELECT stream, verdict, run_id FROM firing WHERE firing_id = :f"), {"f": fid}
        ).one()
    assert tuple(verdict) == ("at", "on-time", rows[0].id)
    assert run_at.planned(beat.engine) == []


def test_p4_cancelled_before_its_instant_and_missed_across_a_day_s12(beat: Beat) -> None:
    from gim_tasks.runtime import run_at

    now = at("2026-11-23 06:59:00")
    kept = run_at.plan_run(beat.engine, MAINTAIN, at("2026-11-23 23:50:00"), "r", "g", now=now)
    dropped = run_at.plan_run(beat.engine, MAINTAIN, at("2026-11-23 07:05:00"), "r", "g", now=now)
    run_at.cancel_planned(beat.engine, dropped, "g")
    with pytest.raises(Exception, match="only a planned run can be cancelled"):
        run_at.cancel_planned(beat.engine, dropped, "g")
    # The beat is down from 23:45 to the next morning: the next day, the run no longer runs.
    beat.tick("2026-11-24 07:00:00")
    with beat.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT firing_id, verdict FROM firing WHERE stream = 'at'"))
        verdicts = {row.firing_id: row.verdict for row in rows}
    assert verdicts == {dropped: "cancelled", kept: "missed"}
    assert beat.rows(MAINTAIN) == []


def test_p4_a_local_time_in_the_dst_gap_is_the_first_instant_after_it_s10() -> None:
    from gim_tasks.runtime import run_at

    instant = run_at.instant_of("2027-03-28T02:30", "Europe/Berlin")
    assert instant.isoformat() == "2027-03-28T01:00:00+00:00"  # 03:00 CEST
    with pytest.raises(Exception, match="neither an ISO instant with its offset nor a local"):
        run_at.instant_of("next tuesday", "Europe/Berlin")


@pytest.mark.date_sensitive  # plans a run two days from today
def test_p1_p3_p4_the_pages_pause_resume_keep_blackouts_and_plan_a_run(
    gim_env: dict[str, str],
) -> None:
    from test_web_api import PASSWORD, ROLES, Web

    from gim_tasks.db.engine import make_engine
    from gim_tasks.web import auth
    from gim_tasks.web.app import create_app

    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    for role in ROLES:
        auth.add_user(engine, role, role, PASSWORD, "test")
    web = Web(create_app(get_settings(), engine), engine)
    operator, csrf = web.session("operator")
    operator.post(f"/jobs/{EXPORT}/pause", data={"csrf": csrf, "reason": "month-end close"})
    page = operator.get("/jobs/scheduled").text
    assert (
        "paused by operator: month-end close" in page and f'action="/jobs/{EXPORT}/resume"' in page
    )
    operator.post(f"/jobs/{EXPORT}/resume", data={"csrf": csrf})
    assert "month-end close" not in operator.get("/jobs/scheduled").text
    refused = operator.post(f"/jobs/{EXPORT}/pause", data={"csrf": csrf, "reason": " "})
    assert refused.status_code == 303
    assert "not paused: a reason is required" in operator.get("/jobs/scheduled").text
    from datetime import UTC, datetime, timedelta

    when = (datetime.now(UTC) + timedelta(days=2)).isoformat(timespec="minutes")
    operator.post(
        "/jobs/run", data={"csrf": csrf, "job": MAINTAIN, "at": when, "reason": "after upgrade"}
    )
    page = operator.get("/jobs/scheduled").text
    assert 'id="planned"' in page and "after upgrade" in page
    admin, admin_csrf = web.session("admin")
    added = {"csrf": admin_csrf, "name": "close", "kind": "month-end", "days": "2", "reason": "x"}
    admin.post("/blackouts", data=added)
    assert "the last 2 days of every month" in admin.get("/options").text
    admin.post("/blackouts", data={**added, "name": "bad", "kind": "weekly", "weekly": "Sun"})
    assert "blackout not added: weekly window &#39;Sun&#39; is not" in admin.get("/options").text
    admin.post("/blackouts/delete", data={"csrf": admin_csrf, "name": "close"})
    assert holds.listing(engine)["blackouts"] == []
    engine.dispose()


def test_p1_p3_the_timeline_shades_a_pause_and_a_blackout_with_their_reason(beat: Beat) -> None:
    from gim_tasks.monitor import timeline

    holds.pause(beat.engine, EXPORT, "month-end close", "ida", now=at("2026-11-23 06:00:00"))
    holds.add_blackout(
        beat.engine,
        Blackout("lunch", "weekly", "canteen network work", weekly="Mon 12:00-Mon 13:00"),
        "ida",
    )
    with beat.engine.connect() as conn:
        options = store.load_options(conn).schedule()
        day = timeline.load(conn, options, date(2026, 11, 23), 1, at("2026-11-23 15:00:00"))
    shaded = {
        job: [(i.start.strftime("%H:%M"), i.end.strftime("%H:%M"), i.reason) for i in items
              if i.kind == "hold"]
        for job, items in day.lanes.items()
    }  # fmt: skip
    assert ("12:00", "13:00", "blackout 'lunch': canteen network work") in shaded[EXTRACT]
    assert shaded[MAINTAIN] == []  # a window naming no job spares maintenance
    assert ("12:00", "13:00", "blackout 'lunch': canteen network work") in shaded[EXPORT]
    assert any(r == "paused by ida: month-end close" for _, _, r in shaded[EXPORT])
    assert 'class="hold"' in timeline.svg(day) and "canteen network work" in timeline.svg(day)


def test_p4_s12_a_run_planned_while_the_beat_was_down_still_runs_the_same_day(
    beat: Beat,
) -> None:
    from gim_tasks.runtime import run_at

    fid = run_at.plan_run(
        beat.engine, MAINTAIN, at("2026-11-23 07:02:00"), "r", "h", now=at("2026-11-23 06:59:00")
    )
    beat.tick("2026-11-23 07:20:00")  # the beat was down from 07:00 to 07:20
    assert [r.firing_id for r in beat.rows(MAINTAIN)] == [fid]
    with beat.engine.connect() as conn:
        verdict = conn.execute(
            sa.text("SELECT verdict, lag_seconds FROM firing WHERE firing_id = :f"), {"f": fid}
        ).one()
    assert verdict.verdict == "late" and verdict.lag_seconds == 18 * 60
