"""The Timeline (SPEC A7; issue 21): lanes of planned firings, windows and runs, in the
schedule's zone across DST, as data and SVG; the schedule preview stores nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import insert_run
from fastapi.testclient import TestClient

from gim_tasks.db.engine import make_engine
from gim_tasks.monitor import timeline
from gim_tasks.options import store
from gim_tasks.options.values import schedule_from_ini
from gim_tasks.schedule.localtime import resolve, zone
from gim_tasks.settings import get_settings
from gim_tasks.web import auth
from gim_tasks.web.app import create_app

TZ = zone("Europe/Berlin")
BERLIN = schedule_from_ini(
    "[schedule]\ntimezone = Europe/Berlin\nrun-aggregates = true\nrun-update-stats = false\n"
)


def local(text: str) -> datetime:
    return resolve(datetime.strptime(text, "%Y-%m-%d %H:%M"), TZ)


@pytest.mark.parametrize(
    ("day", "hours"), [("2026-11-23", 24), ("2026-10-25", 25), ("2026-03-29", 23)]
)
def test_a7_a_day_is_23_24_or_25_hours_wide(day: str, hours: int) -> None:
    drawn = timeline.planned_timeline(BERLIN, date.fromisoformat(day), 1, local(f"{day} 12:00"))
    assert drawn.hours == hours
    labels = [text for _, text, _ in timeline._ticks(drawn)]
    assert len(labels) == hours
    if hours == 25:
        assert labels.count("02:00") == 2
    if hours == 23:
        assert "02:00" not in labels


def test_a7_planned_lanes_windows_and_svg() -> None:
    drawn = timeline.planned_timeline(BERLIN, date(2026, 11, 23), 1, local("2026-11-23 12:00"))
    assert list(drawn.lanes) == [
        "Job_ExtractICON",
        "Job_TransformGIM",
        "Job_AggregateGIM",
        "Job_MaintainGIM",
        "Job_UpdateStats",
        "Job_ExportGIM",
        "Job_BackfillGIM",  # B1: its items (runs) show on its lane; it plans nothing
    ]
    assert [i for i in drawn.lanes["Job_BackfillGIM"] if i.kind == "planned"] == []
    windows = [i for i in drawn.lanes["Job_AggregateGIM"] if i.kind == "window"]
    assert [(w.start.strftime("%H:%M"), w.end.strftime("%d %H:%M")) for w in windows] == [
        ("00:00", "23 03:00"),
        ("04:00", "24 00:00"),
    ]
    etl = [i for i in drawn.lanes["Job_ExtractICON"] if i.kind == "planned"]
    assert len(etl) == 37  # 00:00, 00:30, then 06:30 .. 23:30
    svg = timeline.svg(drawn)
    assert svg.startswith("<svg") and svg.count('<g class="lane"') == 7
    assert svg.count('class="planned verdict-pending"') >= 37
    assert 'class="now"' in svg


@pytest.fixture
def web(gim_env: dict[str, str]) -> Iterator[tuple[TestClient, TestClient, sa.Engine]]:
    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    for name, role in (("vera", "viewer"), ("ada", "admin")):
        auth.add_user(engine, name, role, "password-" + name, "test")
    app = create_app(get_settings(), engine)
    clients = []
    for name in ("vera", "ada"):
        client = TestClient(app, base_url="http://testserver")
        client.headers["Authorization"] = f"Bearer {auth.create_token(engine, name, actor='test')}"
        clients.append(client)
    yield clients[0], clients[1], engine
    engine.dispose()


def test_a7_api_timeline_has_runs_verdicts_and_the_page_draws_them(
    web: tuple[TestClient, TestClient, sa.Engine],
) -> None:
    viewer, _, engine = web
    store.set_option(engine, "schedule", "timezone", "Europe/Berlin", "test")
    started = local("2026-11-23 06:30")
    with engine.begin() as conn:
        run_id = insert_run(
            conn,
            job="Job_ExtractICON",
            trigger="scheduled",
            actor="scheduler",
            state="Failed",
            started_at=started + timedelta(seconds=3),
            ended_at=started + timedelta(seconds=50),
        )
        conn.execute(
            sa.text(
                "INSERT INTO firing (firing_id, stream, job, planned_at, verdict, reason, run_id) "
                "VALUES (:f, 'etl', 'Job_ExtractICON', :p, 'late', 'slow', :r)"
            ),
            {
                "f": "Job_ExtractICON:" + started.astimezone(UTC).isoformat(),
                "p": started,
                "r": run_id,
            },
        )
    reply = viewer.get("/api/timeline", params={"start": "2026-11-23"})
    assert reply.status_code == 200
    body = reply.json()
    assert body["zone"] == "Europe/Berlin" and body["hours"] == 24
    lanes = {lane["job"]: lane["items"] for lane in body["lanes"]}
    runs = [i for i in lanes["Job_ExtractICON"] if i["kind"] == "run"]
    assert [(r["run_id"], r["state"], r["outcome"]) for r in runs] == [
        (run_id, "Failed", "failure")
    ]
    late = [i for i in lanes["Job_ExtractICON"] if i["verdict"] == "late"]
    assert [(datetime.fromisoformat(i["start"]), i["run_id"]) for i in late] == [(started, run_id)]
    assert late[0]["start"].endswith("+01:00")  # in the schedule's zone
    assert viewer.get("/api/timeline", params={"days": 8}).status_code == 422
    assert viewer.get("/api/timeline", params={"start": "23.11.2026"}).status_code == 422
    far = viewer.get("/api/timeline", params={"start": "0001-01-01"})  # found by schemathesis
    assert far.status_code == 400 and "from 1970 to 2999" in far.json()["error"]
    assert viewer.get("/timeline", params={"start": "0001-01-01"}).status_code == 400
    for path, name in (("/api/timeline", "start"), ("/api/runs", "from"), ("/api/runs", "date")):
        bare = viewer.get(path, params={name: "-2.3e-55"})  # pydantic reads Unix time
        assert bare.status_code == 400 and "YYYY-MM-DD" in bare.json()["error"], (path, name)
    # Also found by schemathesis: a bare number was taken for Unix time.
    number = viewer.get("/api/runs", params={"ended_since": "7735881"})
    assert number.status_code == 400 and "ISO instant" in number.json()["error"]
    assert (
        viewer.get("/api/runs", params={"ended_since": "2026-11-23T00:00:00Z"}).status_code == 200
    )
    page = viewer.get("/timeline", params={"start": "2026-11-23"})
    assert page.status_code == 200
    assert f'href="/runs/{run_id}"' in page.text and "mark verdict-late" in page.text
    assert "<script" not in page.text.split('id="timeline"')[1].split("</svg>")[0]


def test_a7_schedule_preview_plans_with_new_values_and_stores_nothing(
    web: tuple[TestClient, TestClient, sa.Engine],
) -> None:
    viewer, admin, engine = web
    body = {"values": {"etl-frequency": "15"}, "start": "2026-11-23"}
    assert viewer.post("/api/schedule/preview", json=body).status_code == 403
    reply = admin.post("/api/schedule/preview", json=body)
    assert reply.status_code == 200, reply.text
    etl = [e for e in reply.json()["events"] if e["job"] == "Job_ExtractICON"]
    assert len(etl) == 2 + 4 * 17 + 2 + 1  # 00:00-00:30 every 15 min, then 06:30 .. 23:45
    with engine.connect() as conn:
        assert store.load_options(conn).text("schedule", "etl-frequency") == "30"
    bad = admin.post("/api/schedule/preview", json={"values": {"etl-frequency": "0"}})
    assert bad.status_code == 400 and "etl-frequency" in bad.json()["error"]
    unknown = admin.post("/api/schedule/preview", json={"values": {"etl-frequenzy": "5"}})
    assert unknown.status_code == 400 and "etl-frequency" in unknown.json()["error"]
    findings = admin.post(
        "/api/schedule/preview",
        json={"values": {"maintain-start-time": "07:00"}, "start": "2026-11-23"},
    ).json()["findings"]
    assert findings and all(f["level"] in ("error", "warning") for f in findings)
    page = admin.get("/options/preview", params={"day": "2026-11-23", "etl-frequency": "15"})
    assert page.status_code == 200 and "etl-frequency" in page.text
    assert viewer.get("/options/preview").status_code == 403
