"""Monitor Jobs in a real browser (headless Debian Chromium driven by Playwright) against the
real stack: `gim web`, a Celery worker, PostgreSQL, Redis and an SMTP server (issue 10).

Screenshots of every tab go to $GIM_TEST_ARTIFACTS (default .local/test-artifacts)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import Smtp, Stack, insert_run
from playwright.sync_api import Browser, Page, expect, sync_playwright

from devtools.localstack import free_port
from gim_tasks.monitor import incidents, notes, notify
from gim_tasks.web import auth

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("GIM_TEST_ARTIFACTS", ROOT / ".local" / "test-artifacts"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a closed network: no background fetches, no first-run work, no sandbox as root.
# The network is cut: every request off loopback goes to a proxy that is not there (port 9,
# discard) and fails, as on an air-gapped site; loopback, where the app listens, bypasses
# proxies by Chromium's default rules.
CHROMIUM_ARGS = [
    "--proxy-server=http://127.0.0.1:9",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run ./dev setup (apt install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _serve(stack: Stack) -> str:
    port = free_port()
    stack.start("web", "web", "--port", str(port))
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    stack.wait(up, 30, "gim web answers /healthz")
    return url


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"web-{name}.png"), full_page=True)


def test_operator_runs_and_stops_a_job_in_the_browser_and_gets_the_mail(
    stack: Stack, browser: Browser
) -> None:
    smtp = Smtp(free_port())
    smtp.start()
    stack.env.update(
        GIM_SMTP_HOST="127.0.0.1",
        GIM_SMTP_PORT=str(smtp.port),
        GIM_WEB_SECRET=secrets.token_urlsafe(48),
        GIM_HEARTBEAT_SECONDS="1",
    )
    auth.add_user(stack.engine, "ada", "admin", "password-ada", "test", email="ada@example.com")
    notify.add_subscription(stack.engine, "Job_AggregateGIM", "ada", False, True, "test")
    try:
        stack.worker()
        url = _serve(stack)
        page = browser.new_page(viewport={"width": 1400, "height": 900})

        page.goto(url + "/jobs/scheduled")
        expect(page).to_have_url(f"{url}/login?next=/jobs/scheduled")
        page.fill("input[name=name]", "ada")
        page.fill("input[name=password]", "wrong-password")
        page.click("button[type=submit]")
        expect(page.locator("#login-error")).to_contain_text("wrong user name or password")
        page.fill("input[name=name]", "ada")
        page.fill("input[name=password]", "password-ada")
        page.click("button[type=submit]")

        # Scheduled tab (A1): Next Run filled for the active jobs, in the schedule's zone.
        expect(page).to_have_url(f"{url}/jobs/scheduled")
        extract = page.locator("#scheduled tr[data-job=Job_ExtractICON]")
        expect(extract.locator("td.next-run")).to_have_text(
            re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+")
        )
        expect(page.locator("#scheduled tbody tr")).to_have_count(7)  # six jobs and back-fills
        _shot(page, "scheduled")

        # API docs work air-gapped: Swagger UI from the app's own files, nothing else
        # requested, no Content-Security-Policy violation.
        elsewhere: list[str] = []
        violations: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(url) else elsewhere.append(r.url))
        page.on(
            "console",
            lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
        )
        page.goto(url + "/api/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("gim-tasks")
        expect(page.locator(".opblock-summary-path").first).to_be_visible()
        _shot(page, "api-docs")
        assert elsewhere == [] and violations == [], (elsewhere, violations)
        page.goto(url + "/jobs/scheduled")

        # Run Job: continuous aggregation (run-aggregates=false, M3) runs until stopped.
        page.click("#tab-run")
        page.select_option("#job", "Job_AggregateGIM")
        page.click("#run-submit")
        expect(page.locator("#reply")).to_contain_text("Running")
        run_id = page.locator("#reply a").inner_text().split()[-1]
        _shot(page, "run-job")

        # Running tab: the run shows up Running; Stop it (M6).
        row = page.locator(f"#running tr[data-run='{run_id}']")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            page.goto(url + "/jobs/running")
            if row.count() and row.locator("td.state").inner_text().startswith("Running"):
                break
            time.sleep(0.5)
        expect(row.locator("td.state")).to_contain_text("Running")
        _shot(page, "running")
        row.locator("button.stop").click()
        expect(page.locator("#notice")).to_contain_text("stop requested")

        # History tab (A2): the run ends Stopped; its detail page says by whom.
        deadline = time.monotonic() + 60
        history = page.locator(f"#history tr[data-run='{run_id}'] td.state")
        while time.monotonic() < deadline:
            page.goto(url + "/jobs/history?job=Job_AggregateGIM")
            if history.count() and history.inner_text().startswith("Stopped"):
                break
            time.sleep(0.5)
        # R4: an operator's stop is neither success nor failure: grey, saying by whom.
        expect(history).to_have_text(re.compile(r"^Stopped\s+operator by ada\s*$"))
        expect(page.locator(f"#history tr[data-run='{run_id}']")).to_have_class(
            re.compile(r"\boutcome-operator\b")
        )
        _shot(page, "history")
        page.click(f"#history tr[data-run='{run_id}'] a")
        expect(page.locator("#run-state")).to_have_text("Stopped")
        expect(page.locator("#run-detail")).to_contain_text("stopped by ada")
        _shot(page, "run-detail")

        # Status summary (A4, R4): a manual run stopped by an operator is not counted; a
        # scheduled run that failed is, and the pop-up links to it.
        page.goto(url + "/options")
        expect(page.locator("#summary a[data-category=Aggregation]")).not_to_contain_text("failed")
        with stack.engine.begin() as conn:
            failed_id = insert_run(
                conn,
                job="Job_AggregateGIM",
                trigger="scheduled",
                actor="scheduler",
                state="Failed",
                ended_at=sa.func.now(),
                error="boom",
            )
        page.goto(url + "/options")
        expect(page.locator("#summary a[data-category=Aggregation]")).to_contain_text("1 failed")
        _shot(page, "options")
        # Alma's widget: the error icon opens the category's failed runs; More info opens
        # History with exactly those selected.
        failing = page.locator("#summary details.failed[data-category=Aggregation]")
        expect(page.locator("#summary details.failed")).to_have_count(1)
        failing.locator("summary.error-icon").click()
        expect(failing.locator(".failed-list a").first).to_have_attribute(
            "href", f"/runs/{failed_id}"
        )
        _shot(page, "summary-failed")
        failing.locator("a.more-info").click()
        expect(page.locator("#history tbody tr")).to_have_count(1)
        expect(page.locator(f"#history tr[data-run='{failed_id}']")).to_have_class(
            re.compile(r"\boutcome-failure\b")
        )
        expect(page.locator("#history-selection")).to_contain_text("from the status summary")
        _shot(page, "history-more-info")
        # Clicking a category opens History with it preselected.
        page.click("#summary a.cat[data-category=Aggregation]")
        expect(page.locator("#history-filters select[name=category]")).to_have_value("Aggregation")
        expect(page.locator("#history-paging")).to_contain_text("of 2")

        # ETL and aggregation status pages (what gim etl status / aggregate status show).
        page.click("#tab-etl")
        expect(page.locator("h1")).to_have_text("ETL status")
        expect(page.locator("#etl-facts")).to_contain_text("interaction_segment_fact")
        expect(page.locator("#etl-freshness tr[data-table=interaction_fact]")).to_have_count(1)
        _shot(page, "etl")
        page.click("#tab-aggregation")
        expect(page.locator("#agg-freshness tr[data-hierarchy=H_AGENT]")).to_have_count(1)
        _shot(page, "aggregation")

        # Alerts tab (O2, O3): the web app's watchdog opened a failure incident for the
        # failed scheduled run (the newest of its job with an outcome).
        def incident() -> bool:
            with stack.engine.connect() as conn:
                return bool(
                    conn.execute(
                        sa.text(
                            "SELECT count(*) FROM incident WHERE condition = 'failure' "
                            "AND job = 'Job_AggregateGIM' AND resolved_at IS NULL"
                        )
                    ).scalar_one()
                )

        stack.wait(incident, 45, "the watchdog's failure incident")
        page.click("#tab-alerts")
        expect(page.locator("#alerts-open tr[data-condition=failure]")).to_contain_text(
            f"run {failed_id}"
        )
        _shot(page, "alerts")
        page.goto(url + "/notifications")
        expect(page.locator("#subscriptions")).to_contain_text("Job_AggregateGIM")
        _shot(page, "notifications")
        # Alma's flow: the Scheduled tab's row action, add an address, Save.
        page.goto(url + "/jobs/scheduled")
        page.click("#scheduled tr[data-job=Job_ExportGIM] a.email-notifications")
        expect(page.locator("h1")).to_have_text("Email notifications: Job_ExportGIM")
        page.fill("#add-email input[name=add_email]", "lead@example.com")
        page.click("#save-notifications")
        expect(page.locator("#notice")).to_contain_text("saved: 1 added")
        expect(
            page.locator("#job-subscribers tr[data-recipient='lead@example.com']")
        ).to_have_count(1)
        _shot(page, "job-notifications")

        # A3 through the worker's notify task: the error mail reaches the SMTP server.
        stack.wait(lambda: len(smtp.inbox.messages) == 1, 60, "the notification mail")
        ((to, mail),) = smtp.inbox.messages
        assert to == ["ada@example.com"]
        assert mail["Subject"] == f"[gim-tasks] Job_AggregateGIM run {run_id}: Stopped"
        page.goto(f"{url}/runs/{run_id}")
        expect(page.locator("#mails")).to_contain_text("sent")
    finally:
        smtp.stop()


#: WCAG 2 A and AA rules of axe-core (the engine of browsers' accessibility dev tools).
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}


def _axe_findings(page: Page) -> list[str]:
    """Serious and critical axe violations of the page: rule, impact, the first nodes."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options=AXE_OPTIONS).response
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + "; ".join(
            f"{node['target'][0] if node['target'] else '?'} ({node['failureSummary']})"
            for node in v["nodes"][:3]
        )
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def _past_days() -> tuple[date, date]:
    today = datetime.now(UTC).date()
    return today - timedelta(days=4), today - timedelta(days=2)


def _a_backfill(stack: Stack) -> int:
    """DATE_TIME over the last days (D5 needs it) and a back-fill of three of them (B1)."""
    from gim_tasks.db.calendar import fill_range, key_of
    from gim_tasks.runtime import backfills
    from gim_tasks.schedule.backfill import Request

    now = datetime.now(UTC)
    with stack.engine.begin() as conn:
        fill_range(conn, "UTC", key_of(now - timedelta(days=10)), key_of(now))
    first, last = _past_days()
    made = backfills.create(
        stack.engine, Request(first, last, ("aggregate",), "all", reason="set-up"), "ada"
    )
    return int(made["id"])


def test_b1_an_operator_dry_runs_creates_and_pauses_a_backfill_in_the_browser(
    stack: Stack, browser: Browser
) -> None:
    stack.env.update(GIM_WEB_SECRET=secrets.token_urlsafe(48))
    auth.add_user(stack.engine, "olga", "operator", "password-olga", "test")
    _a_backfill(stack)  # the calendar
    url = _serve(stack)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url + "/login")
    page.fill("input[name=name]", "olga")
    page.fill("input[name=password]", "password-olga")
    page.click("button[type=submit]")
    page.get_by_role("link", name="Back-fills").click()
    first, last = _past_days()
    form = page.locator("#backfill-form")
    form.locator("input[name=first]").fill(first.isoformat())
    form.locator("input[name=last]").fill(last.isoformat())
    form.get_by_label("all: every day of the range").check()
    form.locator("input[name=reason]").fill("IDB outage")
    form.get_by_role("button", name="Dry run").click()
    expect(page.locator("h1")).to_have_text("Back-fill dry run: nothing recorded")
    expect(page.locator("#backfill-items tbody tr")).to_have_count(6)  # 3 days x 2 steps
    expect(page.locator("#backfill-items")).to_contain_text("as a new generation")
    page.go_back()
    form.get_by_role("button", name="Create").click()
    expect(page.locator("#notice")).to_contain_text("created: 6 item(s)")
    expect(page.locator("#backfill-head")).to_contain_text("State: active, by olga: IDB outage")
    page.locator("#backfill-pause").click()
    expect(page.locator("#notice")).to_contain_text(": paused")
    expect(page.locator("#backfill-resume")).to_have_count(1)
    _shot(page, "backfill")
    page.goto(url + "/backfills")
    expect(page.locator("#backfills tbody tr")).to_have_count(2)


def test_every_page_has_no_serious_accessibility_violation_and_none_reloads_itself(
    stack: Stack, browser: Browser
) -> None:
    """Issue 31: axe-core's WCAG 2 A/AA rules over every page find nothing serious or
    critical; no page reloads itself (WCAG 2.2.1): the live pages update their data in place,
    and a Pause control stops it."""
    stack.env.update(GIM_WEB_SECRET=secrets.token_urlsafe(48))
    auth.add_user(stack.engine, "ada", "admin", "password-ada", "test", email="ada@example.com")
    with stack.engine.begin() as conn:
        failed = insert_run(
            conn,
            job="Job_AggregateGIM",
            trigger="scheduled",
            actor="scheduler",
            state="Failed",
            started_at=sa.func.now() - sa.text("interval '20 minutes'"),
            ended_at=sa.func.now(),
            error="boom",
        )
        incident = incidents.open_incident(conn, "Job_AggregateGIM", "failure", "run failed: boom")
    notes.add_note(stack.engine, "run", failed, "known: the IDB restarted", "ada")
    notes.add_note(stack.engine, "incident", incident, "looking into it", "ada")
    backfill = _a_backfill(stack)
    url = _serve(stack)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url + "/login")
    findings = {"/login": _axe_findings(page)}
    page.fill("input[name=name]", "ada")
    page.fill("input[name=password]", "password-ada")
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{url}/jobs/scheduled")
    pages = [
        "/jobs/scheduled",
        "/jobs/running",
        "/jobs/history",
        "/jobs/run",
        f"/runs/{failed}",
        "/etl",
        "/aggregation",
        "/timeline",
        "/alerts",
        "/options",
        "/options/preview",
        "/notifications",
        "/jobs/Job_ExportGIM/notifications",
        "/audit",
        "/days",
        "/backfills",
        f"/backfills/{backfill}",
    ]
    for path in pages:
        page.goto(url + path)
        if path == "/timeline":  # the run's bar is a link: the page has interactive SVG
            expect(page.locator(f"#timeline a[href='/runs/{failed}']")).to_have_count(1)
        expect(page.locator("h1")).to_have_count(1)
        assert page.locator("meta[http-equiv=refresh]").count() == 0, path
        findings[path] = _axe_findings(page)
    # P7: the Ack button on the Alerts page records who acknowledged the incident.
    page.goto(url + "/alerts")
    row = page.locator(f"#alerts-open tr[data-incident='{incident}']")
    expect(row.locator(".notes")).to_contain_text("looking into it")
    row.get_by_role("button", name="Ack").click()
    expect(page.locator(f"#alerts-open tr[data-incident='{incident}'] td.ack")).to_contain_text(
        "by ada"
    )
    # The Running page updates its rows in place (no reload: the page's own state survives);
    # Pause stops that until Resume.
    page.goto(url + "/jobs/running")
    page.evaluate("window.gimMarker = 'same page'")

    def running_run() -> int:
        with stack.engine.begin() as conn:
            return insert_run(
                conn,
                job="Job_AggregateGIM",
                trigger="manual",
                actor="ada",
                state="Running",
                started_at=sa.func.now(),
                heartbeat_at=sa.func.now() + sa.text("interval '1 day'"),
            )

    first = running_run()
    expect(page.locator(f"#running tr[data-run='{first}']")).to_have_count(1, timeout=15_000)
    assert page.evaluate("window.gimMarker") == "same page"
    toggle = page.locator("#live-toggle")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#live-state")).to_have_text("Updates paused.")
    with stack.engine.begin() as conn:
        conn.execute(sa.text("UPDATE job_run SET state = 'Completed', ended_at = now()"))
    updated = page.locator("#live").get_attribute("data-updated")
    page.wait_for_timeout(12_000)  # two intervals of 5 s: paused, nothing changes
    expect(page.locator(f"#running tr[data-run='{first}']")).to_have_count(1)
    assert page.locator("#live").get_attribute("data-updated") == updated
    toggle.click()
    expect(page.locator(f"#running tr[data-run='{first}']")).to_have_count(0, timeout=15_000)
    assert page.evaluate("window.gimMarker") == "same page"
    bad = {path: found for path, found in findings.items() if found}
    assert bad == {}, "\n".join(f"{path}: {found}" for path, found in bad.items())
