"""Deployment files checked against their schemas, offline (issue "Structure" item 6): every
Kubernetes manifest against the Kubernetes API schemas (kubernetes-validate ships them), and
compose.yaml against the Compose Specification's schema (vendored by check-jsonschema), so a
typo in a manifest fails ./dev test rather than a rollout."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ("deploy/kubernetes.yaml", "beat/kubernetes.yaml", "workers/kubernetes.yaml")
#: The Kubernetes version the manifests are checked against (the newest the package knows
#: is used when this one is missing).
KUBERNETES = "1.31.0"


def _documents(path: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((ROOT / path).read_text()) if doc]


def _version() -> str:
    known = kubernetes_validate.utils.all_versions()
    return KUBERNETES if KUBERNETES in known else kubernetes_validate.latest_version()


def _check(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, _version(), strict=True)


@pytest.mark.parametrize("path", MANIFESTS)
def test_kubernetes_manifests_match_the_api_schemas(path: str) -> None:
    documents = _documents(path)
    assert documents, path
    for document in documents:
        _check(document)


def test_a_typo_in_a_manifest_fails_the_check() -> None:
    deployment = next(d for d in _documents("workers/kubernetes.yaml") if d["kind"] == "Deployment")
    typo = copy.deepcopy(deployment)
    typo["spec"]["replicsa"] = typo["spec"].pop("replicas", 2)
    with pytest.raises(kubernetes_validate.ValidationError):
        _check(typo)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["image"] = 42
    with pytest.raises(kubernetes_validate.ValidationError):
        _check(wrong_type)


def _compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema") / "builtin_schemas" / "vendor"
    schema = vendor / "compose-spec.json"
    return json.loads(schema.read_text())


def test_compose_file_matches_the_compose_specification() -> None:
    spec = yaml.safe_load((ROOT / "compose.yaml").read_text())
    jsonschema.validate(spec, _compose_schema())
    broken = copy.deepcopy(spec)
    broken["services"]["worker"]["restrat"] = "always"
    with pytest.raises(jsonschema.ValidationError, match="restrat"):
        jsonschema.validate(broken, _compose_schema())
