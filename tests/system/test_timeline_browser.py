"""The Timeline tab and the schedule preview (SPEC A7; issue 21) in headless Chromium behind a
cut network, with screenshots: an ordinary day, the 25-hour day of Europe/Berlin, a week with
a missed slot, and the preview of a changed ETL frequency."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from conftest import Stack, insert_run
from playwright.sync_api import Browser, expect
from test_web_browser import _serve, _shot, browser  # noqa: F401 - the fixture

from gim_tasks.options import store
from gim_tasks.schedule.localtime import resolve, zone
from gim_tasks.web import auth

TZ = zone("Europe/Berlin")


def local(text: str) -> datetime:
    return resolve(datetime.strptime(text, "%Y-%m-%d %H:%M"), TZ)


def test_a7_timeline_day_dst_day_week_with_a_missed_slot_and_schedule_preview(
    stack: Stack,
    browser: Browser,  # noqa: F811 - the fixture
) -> None:
    stack.env.update(GIM_WEB_SECRET=secrets.token_urlsafe(48), GIM_WATCHDOG_SECONDS="0")
    engine = stack.engine
    store.set_option(engine, "schedule", "timezone", "Europe/Berlin", "test")
    store.set_option(engine, "schedule", "run-aggregates", "true", "test")
    auth.add_user(engine, "ada", "admin", "password-ada", "test", email="ada@example.com")
    runs = {}
    with engine.begin() as conn:
        for clock, job, state, seconds in (
            ("06:30", "Job_ExtractICON", "Completed", 40),
            ("06:31", "Job_TransformGIM", "Completed", 90),
            ("07:00", "Job_ExtractICON", "Failed", 20),
            ("03:00", "Job_MaintainGIM", "Completed", 1800),
            ("04:00", "Job_AggregateGIM", "Completed", 3600 * 10),
        ):
            started = local(f"2026-11-23 {clock}")
            runs[(job, clock)] = insert_run(
                conn,
                job=job,
                trigger="scheduled",
                actor="scheduler",
                state=state,
                planned_at=started,
                started_at=started + timedelta(seconds=2),
                ended_at=started + timedelta(seconds=seconds),
            )
        conn.execute(
            sa.text(
                "INSERT INTO firing (firing_id, stream, job, planned_at, verdict, reason) "
                "VALUES (:f, 'etl', 'Job_ExtractICON', :p, 'missed', 'the scheduler was down')"
            ),
            {
                "f": "Job_ExtractICON:" + local("2026-11-23 07:30").astimezone(UTC).isoformat(),
                "p": local("2026-11-23 07:30"),
            },
        )
    url = _serve(stack)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url + "/login?next=/timeline")
    page.fill("input[name=name]", "ada")
    page.fill("input[name=password]", "password-ada")
    page.click("button[type=submit]")

    # An ordinary day: a lane per job (seven with the back-fill's), runs coloured by outcome,
    # the missed slot marked.
    page.goto(url + "/timeline?start=2026-11-23&days=1")
    expect(page.locator("#timeline-caption")).to_contain_text("24 hours")
    expect(page.locator("#timeline g.lane")).to_have_count(7)
    extract = page.locator("#timeline g.lane[data-job=Job_ExtractICON]")
    failed = runs[("Job_ExtractICON", "07:00")]
    expect(extract.locator(f"rect.run.outcome-failure[data-run='{failed}']")).to_have_count(1)
    expect(extract.locator("rect.run.outcome-success")).to_have_count(1)
    expect(extract.locator("g.mark.verdict-missed")).to_have_count(1)
    expect(page.locator("#timeline g.lane[data-job=Job_AggregateGIM] rect.window")).to_have_count(2)
    _shot(page, "timeline-day")
    # Clicking a bar opens its run.
    page.click(f"#timeline rect[data-run='{failed}']")
    expect(page).to_have_url(f"{url}/runs/{failed}")
    expect(page.locator("#run-state")).to_have_text("Failed")

    # The fall-back day has 25 hours; 02:00 is labelled twice.
    page.goto(url + "/timeline?start=2026-10-25&days=1")
    expect(page.locator("#timeline-caption")).to_contain_text("25 hours")
    labels = page.locator("#timeline text.hour").all_text_contents()
    assert labels.count("02:00") == 2 and len(labels) == 25, labels
    _shot(page, "timeline-dst-2026-10-25")

    # A week with the missed slot.
    page.goto(url + "/timeline?start=2026-11-23&days=7")
    expect(page.locator("#timeline-caption")).to_contain_text("168 hours")
    expect(page.locator("#timeline g.mark.verdict-missed")).to_have_count(1)
    _shot(page, "timeline-week")
    page.click("#timeline-next")
    expect(page).to_have_url(re.compile(r"start=2026-11-30&days=7"))

    # Preview a schedule change on the Options page: ETL every 15 minutes instead of 30.
    page.goto(url + "/options")
    page.click("#preview summary")
    page.fill("#preview-form input[name=day]", "2026-11-23")
    page.fill("#preview-form input[name=etl-frequency]", "15")
    page.click("#preview-submit")
    expect(page.locator("h1")).to_have_text("Schedule preview")
    expect(page.locator("#preview-changes")).to_contain_text("etl-frequency: 30 → 15")
    current = page.locator("#timeline-current g.lane[data-job=Job_ExtractICON] line.planned")
    proposed = page.locator("#timeline-proposed g.lane[data-job=Job_ExtractICON] line.planned")
    assert proposed.count() > current.count() > 0, (proposed.count(), current.count())
    _shot(page, "timeline-preview")
    with engine.connect() as conn:  # nothing stored
        assert store.load_options(conn).text("schedule", "etl-frequency") == "30"
