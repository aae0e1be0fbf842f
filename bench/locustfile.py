"""Locust users of ``./dev bench web-load`` (issue 40): operators browsing the Monitor Jobs
pages and the API, a Prometheus scraper, and logins. Read by Locust only (``locust -f``); the
bench passes the password and a viewer token in the environment.

Operators log in once (a session, as a browser) and then, with 1-5 s between actions: the
Scheduled and History pages, ``/api/runs`` with filters, ``/api/timeline``, and about once in
96 actions (every ~5 minutes: a new browser, an expired session) a fresh login (argon2: its
cost is reported on its own line). One scraper reads ``/metrics``
every 15 s with the token, as Prometheus does.
"""

from __future__ import annotations

import os
import random
import re

from locust import HttpUser, between, constant, task

PASSWORD = os.environ["GIM_BENCH_PASSWORD"]
TOKEN = os.environ["GIM_BENCH_TOKEN"]
USERS = int(os.environ.get("GIM_BENCH_ACCOUNTS", "10"))
JOBS = ("Job_ExtractICON", "Job_TransformGIM", "Job_UpdateStats", "Job_MaintainGIM")
STATES = ("Completed", "Failed", "Completed,Completed with warnings")


def _login(user: HttpUser) -> None:
    form = user.client.get("/login", name="GET /login")
    found = re.search(r'name="csrf" value="([^"]+)"', form.text)
    csrf = found.group(1) if found else ""
    user.client.post(
        "/login",
        data={"name": f"op{random.randrange(USERS)}", "password": PASSWORD, "csrf": csrf},
        name="POST /login",
        allow_redirects=False,
    )


class Operator(HttpUser):
    wait_time = between(1, 5)

    def on_start(self) -> None:
        _login(self)

    @task(25)
    def scheduled(self) -> None:
        self.client.get("/jobs/scheduled", name="GET /jobs/scheduled")

    @task(25)
    def history(self) -> None:
        self.client.get("/jobs/history", name="GET /jobs/history")

    @task(25)
    def runs(self) -> None:
        params = {"job": random.choice(JOBS), "state": random.choice(STATES), "limit": 50}
        self.client.get("/api/runs", params=params, name="GET /api/runs?job&state")

    @task(20)
    def timeline(self) -> None:
        self.client.get("/api/timeline", name="GET /api/timeline")

    @task(1)
    def again(self) -> None:
        self.client.cookies.clear()
        _login(self)


class Scraper(HttpUser):
    """Prometheus: one scrape every 15 s."""

    fixed_count = 1
    wait_time = constant(15)

    @task
    def scrape(self) -> None:
        self.client.get(
            "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, name="GET /metrics"
        )
