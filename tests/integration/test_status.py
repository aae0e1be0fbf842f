"""``gim status`` and one-line errors for unreachable servers (issue 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devtools.localstack import RedisServer, free_port

GIM = str(Path(sys.executable).with_name("gim"))


def _gim(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GIM_")}
    return subprocess.run(
        [GIM, *args], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def test_status_is_green_when_everything_is_up(gim_env: dict[str, str], servers: object) -> None:
    env = {**gim_env, "GIM_IDB_URLS": servers.postgres.url("postgres")}  # type: ignore[attr-defined]
    result = _gim(env, "status", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert [c["item"] for c in report["checks"]] == ["Info Mart", "schema", "IDB 1", "Redis"]
    assert all(c["ok"] for c in report["checks"])


def test_status_reports_unmigrated_schema(make_database: object, redis_url: str) -> None:
    env = {"GIM_DATABASE_URL": make_database(migrated=False), "GIM_REDIS_URL": redis_url}  # type: ignore[operator]
    result = _gim(env, "status")
    assert result.returncode == 1
    assert "gim db upgrade" in result.stdout


def test_wrong_database_url_gives_one_line_error(redis_url: str) -> None:
    env = {
        "GIM_DATABASE_URL": f"postgresql://gim:pw@127.0.0.1:{free_port()}/gim",
        "GIM_REDIS_URL": redis_url,
    }
    result = _gim(env, "db", "upgrade")
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: Info Mart database postgresql://gim:***@127.0.0.1:")
    assert "pw" not in lines[0]
    status = _gim(env, "status")
    assert status.returncode == 1 and "DOWN" in status.stdout and "Traceback" not in status.stderr


def test_stopped_redis_is_reported_down(gim_env: dict[str, str], tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", free_port(), persistent=False)
    server.start()
    server.stop()
    env = {**gim_env, "GIM_REDIS_URL": server.url()}
    result = _gim(env, "status", "--json")
    assert result.returncode == 1
    redis_check = [c for c in json.loads(result.stdout)["checks"] if c["item"] == "Redis"][0]
    assert redis_check["ok"] is False and "refused" in redis_check["detail"].lower()


def test_missing_setting_stops_with_named_variable(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GIM_")}
    result = subprocess.run(
        [GIM, "status"], env=clean, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: GIM_DATABASE_URL is not set (example: ")
    assert "Traceback" not in result.stderr
