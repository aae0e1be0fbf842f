# ruff: noqa: F811  (the `web` fixture is imported from test_web_api and used by name)
"""Security hardening of the web app and the task path (SPEC A5; issue "Security hardening"):
signing keys, server-side sessions, token expiry, login throttling, bounded hashing, browser
headers on every route, bad input never a 500, the export folder confined, raw task messages
without force. The web's database role is tried in test_roles.py."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner
from test_web_api import PASSWORD, ROUTES, Web, _call, _csrf, web  # noqa: F401 (fixture)

from gim_tasks.db.tables import job_run, option_value, web_session
from gim_tasks.errors import SettingsError
from gim_tasks.runtime import tasks
from gim_tasks.settings import get_settings
from gim_tasks.web import auth
from gim_tasks.web.app import create_app
from gim_tasks.web.security import (
    CONTENT_SECURITY_POLICY,
    DOCS_CONTENT_SECURITY_POLICY,
    Busy,
    HashSlots,
    check_web_secret,
)

GIM = str(Path(sys.executable).with_name("gim"))


# ----- keys -----------------------------------------------------------------------------------


def test_a5_hsts_is_sent_only_when_configured(gim_env: dict[str, str]) -> None:
    from fastapi.testclient import TestClient

    from gim_tasks.web.app import create_app

    plain = TestClient(create_app(get_settings())).get("/healthz")
    assert "strict-transport-security" not in plain.headers
    settings = get_settings().model_copy(update={"web_hsts_seconds": 31536000})
    strict = TestClient(create_app(settings)).get("/healthz")
    assert strict.headers["strict-transport-security"] == "max-age=31536000"


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("", "is not set"),
        ("CHANGE-ME", "placeholder"),
        ("dev-only-session-key", "placeholder"),
        ("short-but-random-Xq9", "at least 32"),
        ("a" * 64, "repeats"),
        ("0123456789abcdefghijklmnopqrstuvwxyz0123456789", "a sequence"),
        ("acegbdfh" * 5, "bits of entropy"),
    ],
)
def test_a5_the_web_app_refuses_a_missing_short_or_known_key(
    gim_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, secret: str, problem: str
) -> None:
    with pytest.raises(SettingsError, match=problem) as refused:
        check_web_secret(secret)
    assert "GIM_WEB_SECRET" in str(refused.value) and "gim web-secret" in str(refused.value)
    monkeypatch.setenv("GIM_WEB_SECRET", secret)
    get_settings.cache_clear()
    with pytest.raises(SettingsError, match="GIM_WEB_SECRET"):
        create_app(get_settings())
    if secret in ("", "CHANGE-ME"):  # the command line too (a process start costs seconds)
        env = {**gim_env, "GIM_WEB_SECRET": secret, "PATH": "/usr/bin:/bin"}
        done = subprocess.run([GIM, "web"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "GIM_WEB_SECRET" in done.stderr
        assert "Traceback" not in done.stderr


def test_a5_a_cookie_signed_with_the_key_is_no_session(web: Web) -> None:
    """The forged admin cookie of the security probe: {"uid": 1, "csrf": "x"} signed with
    GIM_WEB_SECRET. Sessions are server-side records now: it opens nothing."""
    import base64

    secret = get_settings().web_secret
    for payload in ({"uid": 1, "csrf": "x"}, {"sid": "made-up", "csrf": "x"}):
        data = base64.b64encode(json.dumps(payload).encode())
        cookie = TimestampSigner(secret).sign(data).decode()
        client = web.client()
        client.cookies.set("gim_session", cookie)
        assert client.get("/jobs/scheduled").status_code == 303  # to the login page
        reply = client.post(
            "/api/runs", json={"job": "Job_MaintainGIM"}, headers={"X-CSRF-Token": "x"}
        )
        assert reply.status_code == 401
    with web.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(job_run)).scalar() == 0


# ----- sessions and tokens -------------------------------------------------------------------


def _copy(web: Web, client: TestClient) -> TestClient:
    """Another client holding the same cookie (a copied cookie)."""
    thief = web.client()
    thief.cookies.set("gim_session", client.cookies["gim_session"])
    return thief


def test_a5_logout_ends_the_session_even_for_a_copied_cookie(web: Web) -> None:
    client, csrf = web.session("operator")
    thief = _copy(web, client)
    assert thief.get("/jobs/scheduled").status_code == 200
    assert client.post("/logout", data={"csrf": csrf}).status_code == 303
    assert thief.get("/jobs/scheduled").status_code == 303
    assert thief.get("/api/me").status_code == 401


@pytest.mark.parametrize("change", ["password", "role", "remove"])
def test_a5_password_role_change_and_removal_end_every_session(web: Web, change: str) -> None:
    first, _ = web.session("operator")
    second, _ = web.session("operator")
    assert first.get("/api/me").status_code == 200
    if change == "password":
        ended = auth.update_user(web.engine, "operator", password="another pass 2", actor="t")
        assert ended == {"sessions": 2, "tokens": 1}
    elif change == "role":
        assert auth.update_user(web.engine, "operator", role="viewer", actor="t")["sessions"] == 2
    else:
        auth.remove_user(web.engine, "operator", "t")
    for client in (first, second):
        assert client.get("/api/me").status_code == 401
    with web.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(web_session)).scalar() == 0


def test_a5_idle_and_absolute_session_lifetime(web: Web) -> None:
    client, csrf = web.session("viewer")
    with web.engine.begin() as conn:
        (expires,) = conn.execute(sa.select(web_session.c.expires_at)).one()
    for _ in range(3):  # writes re-sign the cookie; the absolute end never moves
        assert client.post("/logout", data={"csrf": "wrong"}).status_code == 403
        assert client.get("/api/me").status_code == 200
    with web.engine.begin() as conn:
        assert conn.execute(sa.select(web_session.c.expires_at)).scalar_one() == expires
        conn.execute(
            sa.update(web_session).values(
                last_seen_at=sa.func.now() - sa.text("interval '61 minutes'")
            )
        )
    assert client.get("/api/me").status_code == 401  # idle for longer than 60 minutes
    client, _ = web.session("viewer")
    with web.engine.begin() as conn:
        conn.execute(
            sa.update(web_session).values(expires_at=sa.func.now() - sa.text("interval '1 second'"))
        )
    assert client.get("/api/me").status_code == 401  # past its absolute end


def test_a5_tokens_expire_are_revoked_by_a_new_password_unless_kept_and_show_last_use(
    web: Web,
) -> None:
    short = auth.create_token(web.engine, "viewer", "short", expires_days=1, actor="t")
    headers = {"Authorization": f"Bearer {short}"}
    assert web.client().get("/api/me", headers=headers).status_code == 200
    (listed,) = [t for t in auth.list_tokens(web.engine, "viewer") if t["label"] == "short"]
    assert listed["last_used_at"] is not None and listed["expires_at"] is not None
    with web.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE api_token SET expires_at = now() - interval '1 s' WHERE label = 'short'"
            )
        )
    assert web.client().get("/api/me", headers=headers).status_code == 401
    kept = web.tokens["viewer"]
    auth.update_user(web.engine, "viewer", password="a new password", keep_tokens=True, actor="t")
    assert web.api("viewer").get("/api/me").status_code == 200
    auth.update_user(web.engine, "viewer", password="yet another one", actor="t")
    assert (
        web.client().get("/api/me", headers={"Authorization": f"Bearer {kept}"}).status_code == 401
    )


# ----- throttling and bounded hashing ---------------------------------------------------------


def _login(client: TestClient, name: str, password: str) -> Any:
    csrf = _csrf(client.get("/login").text)
    return client.post("/login", data={"name": name, "password": password, "csrf": csrf})


def test_a5_five_failures_a_minute_then_429_with_retry_after_even_for_the_right_password(
    web: Web,
) -> None:
    client = web.client()
    for _ in range(5):
        assert _login(client, "admin", "wrong password").status_code == 401
    refused = _login(client, "admin", PASSWORD)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    assert "too many failed logins" in refused.text
    with web.engine.begin() as conn:  # a minute later
        conn.execute(sa.text("UPDATE login_failure SET at = at - interval '61 seconds'"))
    assert _login(client, "admin", PASSWORD).status_code == 303


def _from(web: Web, address: str, app: Any = None) -> TestClient:
    """A client whose TCP peer is ``address``."""
    return TestClient(
        app or web.app, base_url="http://testserver", follow_redirects=False, client=(address, 5)
    )


def test_a5_failures_from_one_address_slow_other_accounts_but_never_refuse_them(
    web: Web,
) -> None:
    """Issue 41: behind a proxy every user is one address; failed logins of made-up names from
    it slow the next attempts, and never refuse another account's correct password."""
    client = web.client()
    for name in ("ghost1", "ghost2", "ghost3", "ghost4", "ghost5"):
        assert _login(client, name, "wrong password").status_code == 401
    began = time.monotonic()
    assert _login(client, "viewer", PASSWORD).status_code == 303
    assert time.monotonic() - began >= 0.5  # slowed: 0.5 s per failure over the limit


def test_a5_concurrent_wrong_passwords_reach_the_hash_at_most_limit_times(web: Web) -> None:
    """Issue 41: the attempt is reserved before the hash. 20 wrong passwords at once for one
    account from one address: at most 5 are checked (401), the rest are refused (429); and
    from 20 addresses at once, still at most 5 for the account."""
    from concurrent.futures import ThreadPoolExecutor

    def attempt(address: str) -> int:
        client = _from(web, address)
        return int(_login(client, "operator", "wrong password").status_code)

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(attempt, ["192.0.2.10"] * 20))
    assert codes.count(401) <= 5 and codes.count(401) + codes.count(429) == 20, codes
    with web.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM login_failure"))
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(attempt, [f"192.0.2.{n}" for n in range(20, 40)]))
    assert codes.count(401) <= 5 and codes.count(401) + codes.count(429) == 20, codes


def test_a5_a_known_address_logs_in_while_strangers_hold_the_account(web: Web) -> None:
    """Issue 41: failures from strangers hold an account at 429 on new addresses, but a correct
    password from an address the account logged in from before gets through."""
    home = _from(web, "198.51.100.7")
    assert _login(home, "admin", PASSWORD).status_code == 303  # known from now on
    for n in range(5):
        assert _login(_from(web, f"203.0.113.{n}"), "admin", "guess").status_code == 401
    assert _login(_from(web, "203.0.113.99"), "admin", PASSWORD).status_code == 429
    assert _login(_from(web, "198.51.100.7"), "admin", PASSWORD).status_code == 303


def test_a5_the_client_behind_a_trusted_proxy_is_the_forwarded_one(web: Web) -> None:
    """Issue 41: GIM_WEB_TRUSTED_PROXIES: X-Forwarded-For names the client when the peer is a
    trusted proxy; from any other peer (loopback included) the header is ignored."""
    settings = get_settings().model_copy(update={"web_trusted_proxies": ["10.0.0.0/8"]})
    app = create_app(settings, web.engine)
    forwarded = {"X-Forwarded-For": "203.0.113.50, 10.1.1.1"}
    via_proxy, direct = _from(web, "10.1.2.3", app), _from(web, "127.0.0.1", app)
    via_proxy.headers.update(forwarded)
    direct.headers.update(forwarded)
    assert _login(via_proxy, "ghost-a", "x").status_code == 401
    assert _login(direct, "ghost-b", "x").status_code == 401
    with web.engine.connect() as conn:
        clients = dict(conn.execute(sa.text("SELECT account, client FROM login_failure")).all())
    assert clients == {"ghost-a": "203.0.113.50", "ghost-b": "127.0.0.1"}


def test_a5_password_hashing_is_bounded_per_process(web: Web) -> None:
    slots = HashSlots(1, wait=0.2)
    with slots.slot(), pytest.raises(Busy):
        with slots.slot():
            pass
    # The app's slots: all taken, a login waits briefly, then 503 with Retry-After; no hash.
    app_slots: HashSlots = web.app.state.hash_slots
    app_slots.wait = 0.2
    held = [app_slots._semaphore.acquire() for _ in range(get_settings().web_hash_slots)]
    try:
        busy = _login(web.client(), "admin", PASSWORD)
    finally:
        for _ in held:
            app_slots._semaphore.release()
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
    results: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(_login(web.client(), "admin", PASSWORD).status_code)
        )
        for _ in range(4)
    ]
    app_slots.wait = 30
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [303] * 4


# ----- headers ----------------------------------------------------------------------------------


def test_a5_security_headers_on_every_route(web: Web) -> None:
    sessions = {"admin": web.session("admin")}
    for method, path in ROUTES:
        for client, csrf in ((web.client(), None), sessions["admin"], (web.api("admin"), None)):
            reply = _call(client, method, path, csrf)
            headers = reply.headers
            # The docs page alone allows inline style attributes (Swagger UI sets them).
            docs = path == "/api/docs" and reply.status_code == 200
            expected = DOCS_CONTENT_SECURITY_POLICY if docs else CONTENT_SECURITY_POLICY
            assert headers["content-security-policy"] == expected, (method, path)
            assert "script-src 'self';" in expected
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert headers["x-frame-options"] == "DENY", (method, path)
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "same-origin"
            assert headers["cache-control"] == "no-store", (method, path, reply.status_code)
        if path == "/logout":
            sessions["admin"] = web.session("admin")
    static = web.client().get("/static/style.css")
    assert static.status_code == 200 and static.headers["x-content-type-options"] == "nosniff"
    assert "no-store" not in static.headers.get("cache-control", "")
    page = sessions["admin"][0].get("/jobs/scheduled").text
    assert "onchange=" not in page and "<script>" not in page  # nothing inline for CSP to block


# ----- bad input ----------------------------------------------------------------------------


def test_a5_nul_bytes_and_huge_ids_are_4xx_never_500(web: Web) -> None:
    anonymous = web.client()
    csrf = _csrf(anonymous.get("/login").text)
    nul = anonymous.post("/login", data={"name": "adm\x00in", "password": "x" * 9, "csrf": csrf})
    assert nul.status_code == 400 and "invalid input" in nul.text
    admin = web.api("admin")
    assert admin.get("/api/runs", params={"job": "Job\x00"}).status_code in (400, 422)
    session, token = web.session("admin")
    huge = 2**63
    for method, path in ROUTES:
        if "{run_id}" not in path and "{subscription_id}" not in path:
            continue
        url = path.format(run_id=huge, subscription_id=huge)
        for client, headers in ((admin, {}), (session, {"X-CSRF-Token": token})):
            if path.startswith("/api"):
                reply = client.request(method, url, headers=headers)
            else:
                reply = client.request(
                    method, url, data={"csrf": token} if method == "POST" else None
                )
            assert 400 <= reply.status_code < 500, (method, path, reply.status_code)


# ----- the export folder ------------------------------------------------------------------------


def test_a5_the_export_folder_must_lie_under_gim_output_directory(
    web: Web, gim_env: dict[str, str], tmp_path: Path
) -> None:
    admin = web.api("admin")
    outside = admin.put("/api/options/gim-export/output-directory", json={"value": "/etc/gim-x"})
    assert outside.status_code == 400 and "outside GIM_OUTPUT_DIRECTORY" in outside.json()["error"]
    sneaky = admin.put(
        "/api/options/gim-export/output-directory", json={"value": "exports/../../escape"}
    )
    assert sneaky.status_code == 400
    with web.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(option_value)).scalar() == 0
    inside = Path(gim_env["GIM_OUTPUT_DIRECTORY"]) / "a" / "b"
    assert (
        admin.put(
            "/api/options/gim-export/output-directory", json={"value": str(inside)}
        ).status_code
        == 200
    )
    assert web.api("viewer").get("/api/options").status_code == 200
    assert not inside.exists() and not inside.parent.exists()  # reading never creates


# ----- raw task messages -----------------------------------------------------------------------


def test_a5_a_raw_task_message_can_never_force(gim_env: dict[str, str]) -> None:
    reply = tasks.run_job("Job_ExportGIM", task_id=None, force=True)
    assert reply["state"] == "Rejected" and "force is refused in a task message" in reply["reason"]
    plain = tasks.run_job("Job_ExportGIM", task_id=None)
    assert plain["state"] == "Rejected" and "(M7)" in plain["reason"]
    from gim_tasks.db.engine import make_engine

    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    with engine.connect() as conn:
        rows = conn.execute(sa.select(job_run.c.actor, job_run.c.forced)).all()
    assert [tuple(r) for r in rows] == [("celery (unnamed)", False)]  # the plain refusal only


def test_a5_a_token_lifetime_limit_refuses_longer_tokens(
    gim_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gim_tasks.cli.main import main as gim
    from gim_tasks.db.engine import make_engine
    from gim_tasks.web import auth

    auth.add_user(make_engine(gim_env["GIM_DATABASE_URL"]), "tess", "viewer", PASSWORD, "test")
    monkeypatch.setenv("GIM_WEB_TOKEN_MAX_DAYS", "90")
    get_settings.cache_clear()
    capsys.readouterr()
    assert gim(["token", "create", "tess"]) == 1
    assert "tokens live at most 90 days here" in capsys.readouterr().err
    assert gim(["token", "create", "tess", "--expires-days", "91"]) == 1
    assert gim(["token", "create", "tess", "--expires-days", "90"]) == 0
    get_settings.cache_clear()
