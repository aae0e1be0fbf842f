"""compose.yaml and the process entry points (issue 3): the stack file is valid for Compose,
requires its passwords, keeps workers scalable and Flower behind basic auth."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "REDIS_PASSWORD": "redis-secret",
    "GIM_FLOWER_PASSWORD": "flower-secret",
    "GIM_WEB_SECRET": "Z3xv0C8pOq1tY7n2mB5kR9wE4aL6sD0fH3jK8uP1",
    "GIM_WEB_DB_PASSWORD": "web-db-secret",
}


def _compose() -> list[str]:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    if legacy := shutil.which("docker-compose"):
        return [legacy]
    if os.environ.get("CI"):
        pytest.fail(
            "neither `docker compose` nor docker-compose is installed (./dev test installs it)"
        )
    pytest.skip("no docker compose to validate compose.yaml")


def _config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in PASSWORDS}
    return subprocess.run(
        [*_compose(), "-f", str(ROOT / "compose.yaml"), "config"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_compose_config_is_valid_and_resolves_services() -> None:
    result = _config(PASSWORDS)
    assert result.returncode == 0, result.stderr
    for service in ("postgres:", "redis:", "migrate:", "beat:", "worker:", "flower:", "web:"):
        assert f"\n  {service}\n" in result.stdout


@pytest.mark.parametrize("missing", sorted(PASSWORDS))
def test_compose_refuses_to_start_without_each_password(missing: str) -> None:
    result = _config({k: v for k, v in PASSWORDS.items() if k != missing})
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr


def test_compose_workers_scale_and_services_are_protected() -> None:
    import yaml  # PyYAML comes with the dev dependencies

    spec = yaml.safe_load((ROOT / "compose.yaml").read_text())
    worker = spec["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N works
    assert "--requirepass" in spec["services"]["redis"]["command"]
    assert "noeviction" in spec["services"]["redis"]["command"]
    assert "FLOWER_BASIC_AUTH" in spec["services"]["flower"]["environment"]
    assert spec["services"]["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    assert spec["services"]["migrate"]["command"] == [
        "sh",
        "-c",
        "gim db upgrade && gim db grant-web gim_web",
    ]
    web_env = spec["services"]["web"]["environment"]
    assert web_env["GIM_DATABASE_URL"].startswith("postgresql://gim_web:${GIM_WEB_DB_PASSWORD")


@pytest.mark.parametrize(
    "script", ["beat/entrypoint.sh", "workers/entrypoint.sh", "dev", ".ci/run"]
)
def test_scripts_are_executable_and_parse(script: str) -> None:
    path = ROOT / script
    assert os.access(path, os.X_OK)
    shell = "bash" if path.read_text().startswith("#!/usr/bin/env bash") else "sh"
    assert subprocess.run([shell, "-n", str(path)], capture_output=True).returncode == 0


def test_kubernetes_manifests_beat_ha_workers_scalable_flower_protected() -> None:
    import yaml

    docs = []
    for path in ("beat/kubernetes.yaml", "workers/kubernetes.yaml", "deploy/kubernetes.yaml"):
        docs += [d for d in yaml.safe_load_all((ROOT / path).read_text()) if d]
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    beat = by_name[("Deployment", "gim-tasks-beat")]
    assert beat["spec"]["replicas"] == 2
    assert beat["spec"]["template"]["spec"]["containers"][0]["command"] == ["gim-beat"]
    workers = [
        d
        for (kind, _), d in by_name.items()
        if kind == "Deployment"
        and d["spec"]["template"]["metadata"]["labels"].get("app") == "gim-tasks-worker"
    ]
    queues = ",".join(
        e["value"]
        for w in workers
        for e in w["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "GIM_WORKER_QUEUES"
    ).split(",")
    assert sorted(queues) == sorted(
        ["etl", "stats", "aggregate", "maintenance", "export", "backfill", "notify"]
    )
    assert ("HorizontalPodAutoscaler", "gim-tasks-worker-etl") in by_name
    secret = by_name[("Secret", "gim-tasks-settings")]["stringData"]
    assert "FLOWER_BASIC_AUTH" in secret and "CHANGE-ME" in secret["FLOWER_BASIC_AUTH"]
    # The example ships no usable session key: the web app refuses to start with it (A5).
    from gim_tasks.errors import SettingsError
    from gim_tasks.web.security import check_web_secret

    with pytest.raises(SettingsError, match="GIM_WEB_SECRET"):
        check_web_secret(secret["GIM_WEB_SECRET"])
    images = {
        c["image"]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"gim-tasks:latest"}  # one image for every role
