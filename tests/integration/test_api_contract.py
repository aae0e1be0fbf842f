"""The API keeps the contract its OpenAPI document states (issue 23), tested from the document
itself: schemathesis draws requests from ``/api/openapi.json`` for every operation, as every
role and as nobody, valid ones and invalid ones, and sends them to the real app (real
PostgreSQL and Redis). Every answer must be declared (status, content type, body schema); no
5xx; a valid request from a role that may call the operation is accepted or refused only for a
reason the operation documents (404, 409, and the 400 of values the schema cannot check); an
invalid one is refused with a declared 4xx.

The contract snapshot (``tests/api_contract.txt``) lists every operation, parameter and field:
one that disappears fails the test unless the README's "API changes" list names it.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from conftest import insert_run
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig

from gim_tasks import __version__
from gim_tasks.db.engine import make_engine
from gim_tasks.db.tables import ROLES, metadata, web_user
from gim_tasks.monitor import notify
from gim_tasks.settings import Settings, get_settings
from gim_tasks.web import auth
from gim_tasks.web.app import create_app
from gim_tasks.web.errors import every_route
from gim_tasks.web.schemas import CANNOT_CHECK

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "tests" / "api_contract.txt"
README = ROOT / "README.md"
CALLERS = ("nobody", *ROLES)
#: Checks every answer passes (schemathesis's, against the document).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]
#: Statuses no valid request from an allowed caller may get: authentication and validation.
NOT_FOR_VALID = {401, 403, 413, 422}


def _document_app() -> Any:
    """The app only to read its document (no server is contacted to build it)."""
    return create_app(
        Settings(
            database_url="postgresql://gim@127.0.0.1:1/gim",
            redis_url="redis://127.0.0.1:1/0",
            web_secret=secrets.token_hex(32),
        )
    )


DOCUMENT_APP = _document_app()
DOCUMENT = DOCUMENT_APP.openapi()


def _operations(accepted: list[str]) -> dict[str, Any]:
    """The operations, for schemathesis's "valid data accepted" check with these statuses."""
    config = {"checks": {"positive_data_acceptance": {"expected-statuses": accepted}}}
    schema = schemathesis.openapi.from_dict(DOCUMENT, config=SchemathesisConfig.from_dict(config))
    return {
        f"{op.method.upper()} {op.path}": op for op in (r.ok() for r in schema.get_all_operations())
    }


#: A valid request is accepted, or refused for what exists (404) or the state (409); the
#: caller's credentials and role (401, 403) are judged by _expected_for_valid.
ACCEPTED = ["2xx", "401", "403", "404", "409"]
OPERATIONS = _operations(ACCEPTED)
#: ... and a 400 only where the operation's document says what it refuses that its schema
#: cannot state (issue 32).
UNCHECKED = _operations([*ACCEPTED, "400"])


def _unchecked(operation: str) -> str:
    op = OPERATIONS[operation]
    responses = DOCUMENT["paths"][op.path][op.method.lower()]["responses"]
    description = str(responses.get("400", {}).get("description", ""))
    return description if description.startswith(CANNOT_CHECK) else ""


def _roles(app: Any) -> dict[str, str]:
    """Each API operation's weakest role, read from its role dependency (api_role)."""
    found = {}
    for route in every_route(app):
        if isinstance(route, APIRoute) and route.include_in_schema:
            needed = [d.call.role for d in route.dependant.dependencies if hasattr(d.call, "role")]
            needed += [
                sub.call.role
                for d in route.dependant.dependencies
                for sub in d.dependencies
                if hasattr(sub.call, "role")
            ]
            for method in route.methods:
                found[f"{method} {route.path}"] = needed[0] if needed else "public"
    return found


NEEDED = _roles(DOCUMENT_APP)


#: What the API's writes change; each example starts from the fixture's rows of these (issue
#: 32: an example's stop, cancel, subscription or option no longer leaks into the next one).
WRITTEN = (
    "job_run",
    "run_at",
    "option_value",
    "option_change",
    "notification_subscription",
    "agg_request",
    "job_pause",
    "firing_skip",
    "blackout",
)


class Contract:
    def __init__(
        self, app: Any, tokens: dict[str, str], ids: dict[str, list[int]], engine: sa.Engine
    ) -> None:
        self.app, self.tokens, self.ids, self.engine = app, tokens, ids, engine
        with engine.connect() as conn:
            self.rows = {
                table: [dict(row._mapping) for row in conn.execute(metadata.tables[table].select())]
                for table in WRITTEN
            }

    def reset(self) -> None:
        """Every table the API writes back to the fixture's rows, ids kept (identity columns
        are generated by default, so the ids can be given)."""
        with self.engine.begin() as conn:
            # DELETE, not TRUNCATE: its table lock would wait on the app's watchdog thread.
            for table in WRITTEN[::-1]:
                conn.execute(metadata.tables[table].delete())
            for table, rows in self.rows.items():
                if rows:
                    conn.execute(metadata.tables[table].insert(), rows)

    def headers(self, caller: str) -> dict[str, str]:
        return {} if caller == "nobody" else {"Authorization": f"Bearer {self.tokens[caller]}"}


@pytest.fixture
def contract(gim_env: dict[str, str]) -> Iterator[Contract]:
    engine = make_engine(gim_env["GIM_DATABASE_URL"])
    with engine.begin() as conn:  # token users (no password: argon2 would cost 0.3 s each)
        conn.execute(
            sa.insert(web_user),
            [
                # Subscription recipients too; the admin has no e-mail address (a 409).
                {
                    "name": role,
                    "role": role,
                    "password_hash": "!",
                    "email": None if role == "admin" else f"{role}@example.com",
                    "created_by": "test",
                }
                for role in ROLES
            ],
        )
        # Runs in each state the operations treat differently, so that ids the test draws
        # from these reach past the 404 into the state rules (stop, cancel: 409).
        run_ids = [
            insert_run(conn, job=job, trigger="manual", actor="test", state=state, **times)
            for job, state, times in (
                ("Job_ExportGIM", "Running", {"started_at": sa.func.now()}),
                ("Job_UpdateStats", "Scheduled", {"reason": "waiting (test)"}),
                ("Job_ExtractICON", "Completed", {"ended_at": sa.func.now()}),
                ("Job_MaintainGIM", "Failed", {"ended_at": sa.func.now(), "error": "x"}),
            )
        ]
    subscription = notify.add_subscription(
        engine, "Job_ExportGIM", "a@example.com", True, True, "t"
    )
    tokens = {role: auth.create_token(engine, role, actor="test") for role in ROLES}
    ids = {"run_id": run_ids, "subscription_id": [subscription]}
    yield Contract(create_app(get_settings(), engine), tokens, ids, engine)
    engine.dispose()


def _may(caller: str, operation: str) -> bool:
    needed = NEEDED[operation]
    return caller != "nobody" and ROLES.index(caller) >= ROLES.index(needed)


def _expected_for_valid(caller: str, operation: str, case: Any) -> set[int]:
    """What a schema-valid request from ``caller`` may get."""
    if caller == "nobody":
        return {401}
    if not _may(caller, operation):
        return {403}
    declared = {
        int(code)
        for code in DOCUMENT["paths"][OPERATIONS[operation].path][
            OPERATIONS[operation].method.lower()
        ]["responses"]
    }
    allowed = declared - NOT_FOR_VALID
    if not _unchecked(operation):
        allowed.discard(400)  # its schema states everything it checks
    forcing = operation in ("POST /api/runs", "POST /api/planned-runs")
    if forcing and caller != "admin" and (case.body or {}).get("force"):
        allowed.add(403)  # forcing (M7) needs the admin role: documented on the operation
    return allowed


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@settings(
    max_examples=int(os.environ.get("GIM_CONTRACT_EXAMPLES", "12")),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
def test_every_answer_is_declared(
    contract: Contract, operation: str, caller: str, data: st.DataObject
) -> None:
    contract.reset()
    op = (UNCHECKED if _unchecked(operation) else OPERATIONS)[operation]
    mode = data.draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
    # Half the valid cases name an object that exists (drawn ids are almost never one).
    known = {
        name: data.draw(st.sampled_from(ids), label=name)
        for name, ids in contract.ids.items()
        if "{" + name + "}" in op.path
        and mode is GenerationMode.POSITIVE
        and data.draw(st.booleans())
    }
    case = data.draw(op.as_strategy(generation_mode=mode, path_parameters=known or None))
    response = case.call(app=contract.app, headers=contract.headers(caller))
    case.validate_response(response, checks=CHECKS)
    if mode is GenerationMode.POSITIVE:
        expected = _expected_for_valid(caller, operation, case)
        assert response.status_code in expected, (
            f"{operation} as {caller}: {response.status_code} {response.text[:300]}; a valid "
            f"request may get {sorted(expected)}"
        )


def test_every_operation_declares_its_errors() -> None:
    """A new route without declared responses fails here (and 401/403 on each, since every
    API operation checks a role)."""
    for operation, op in OPERATIONS.items():
        responses = DOCUMENT["paths"][op.path][op.method.lower()]["responses"]
        declared = {int(code) for code in responses}
        assert {401, 403} <= declared, f"{operation} does not declare 401 and 403"
        assert any(200 <= code < 300 for code in declared), operation
        for code, response in responses.items():
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            assert schema, f"{operation} {code}: no JSON body schema"
            if int(code) >= 400:  # every error body carries "error"
                assert "error" in _resolve(schema)["required"], (operation, code)
        if op.body:
            assert {413, 422} <= declared, f"{operation} takes a body: 413 and 422"


def test_document_carries_the_version_and_head_and_allow(contract: Contract) -> None:
    from fastapi.testclient import TestClient

    assert DOCUMENT["info"]["version"] == __version__
    client = TestClient(contract.app)
    client.headers["Authorization"] = f"Bearer {contract.tokens['viewer']}"
    get = client.get("/api/summary")
    head = client.head("/api/summary")
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == str(len(get.content))
    trace = client.request("TRACE", "/api/summary")
    assert trace.status_code == 405
    assert trace.headers["allow"] == "GET, HEAD"
    post_only = client.head("/api/runs/1/stop")
    assert post_only.status_code == 405 and post_only.headers["allow"] == "POST"


# ----- the contract snapshot ---------------------------------------------------------------


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _fields(schema: dict[str, Any], prefix: str, depth: int = 0) -> Iterator[str]:
    schema = _resolve(schema)
    if schema.get("type") == "array" and "items" in schema:
        yield from _fields(schema["items"], prefix + "[]", depth)
        return
    for variant in schema.get("anyOf", []):
        if variant.get("type") != "null":
            yield from _fields(variant, prefix, depth)
    for name, sub in schema.get("properties", {}).items():
        yield f"{prefix}.{name}"
        if depth < 3:
            yield from _fields(sub, f"{prefix}.{name}", depth + 1)


def contract_lines() -> set[str]:
    """Every operation, parameter, body field and answer field (success and errors)."""
    lines = set()
    for path, methods in DOCUMENT["paths"].items():
        for method, spec in methods.items():
            operation = f"{method.upper()} {path}"
            lines.add(operation)
            for parameter in spec.get("parameters", []):
                lines.add(f"{operation} {parameter['in']}.{parameter['name']}")
            body = spec.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                lines.update(f"{operation} {f}" for f in _fields(body["schema"], "body"))
            for code, response in spec["responses"].items():
                lines.add(f"{operation} {code}")
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if schema:
                    lines.update(f"{operation} {f}" for f in _fields(schema, code))
    return lines


def _readme_changes() -> str:
    text = README.read_text()
    match = re.search(r"^### API changes\n(.*?)(?=^#)", text, re.S | re.M)
    assert match, "README.md has no '### API changes' section"
    return match.group(1)


def test_nothing_disappears_from_the_contract_unannounced() -> None:
    """Run with GIM_UPDATE_CONTRACT=1 to write the snapshot after adding to the API; what the
    snapshot has and the document lost must be named in the README's API changes list."""
    current = contract_lines()
    if os.environ.get("GIM_UPDATE_CONTRACT"):
        SNAPSHOT.write_text("".join(f"{line}\n" for line in sorted(current)))
    recorded = set(SNAPSHOT.read_text().splitlines())
    changes = _readme_changes()
    gone = sorted(line for line in recorded - current if f"`{line}`" not in changes)
    assert not gone, "removed from the API without a note in README.md's API changes: " + "; ".join(
        gone[:20]
    )
    new = sorted(current - recorded)
    assert not new, (
        "new in the API but not in tests/api_contract.txt (GIM_UPDATE_CONTRACT=1 writes it): "
        + "; ".join(new[:20])
    )
