"""The OpenAPI document against the live local stack: routes exist, schemathesis finds nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import ignored_auth

from common.service_identity import Surface
from functions.operations import MAX_ADMIN_BODY_BYTES
from hookyard.stack import LocalStack
from tests.support.postgres import TestServer
from tests.support.stack import (
    ADMIN_TOKEN,
    module_stack,
    service_token,
)

FUZZED_TAGS = ("webhooks", "admin", "health")
EXAMPLES = 40


@pytest.fixture(scope="module")
def live(pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with module_stack(pg_server, tmp_path_factory.mktemp("openapi")) as running:
        yield running


@pytest.fixture(scope="module")
def document(live: LocalStack) -> dict[str, Any]:
    response = httpx.get(f"{live.url}/openapi.json", timeout=60)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_document_is_openapi_31_and_lists_the_topology(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    webhooks = {
        p.removeprefix("/webhooks/") for p in document["paths"] if p.startswith("/webhooks/")
    }
    assert webhooks == {"stripe", "standard", "github", "shopify", "slack", "twilio"}
    twilio = document["paths"]["/webhooks/twilio"]["post"]
    assert set(twilio["responses"]["202"]["content"]) == {"text/xml"}
    stripe = document["paths"]["/webhooks/stripe"]["post"]
    assert set(stripe["requestBody"]["content"]) == {"application/json"}


def test_every_documented_operation_is_routed(live: LocalStack, document: dict[str, Any]) -> None:
    """No documented operation may fall through to the router's 'no route' 404 or to a 405;
    each is called with the credential its caller has (a service token, the admin token)."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            concrete = _concrete(path, operation, item, document)
            auth = {"Authorization": f"Bearer {_credential(live, path)}"}
            response = httpx.request(method.upper(), live.url + concrete, headers=auth, timeout=60)
            assert response.status_code != 405, (method, concrete)
            if response.status_code == 404:
                assert "no route" not in response.text, (method, concrete)
            documented = operation["responses"]
            assert str(response.status_code) in documented, (method, concrete, response.text)
            assert response.headers["X-Content-Type-Options"] == "nosniff", (method, concrete)


def test_every_operation_taking_a_body_documents_its_413(document: dict[str, Any]) -> None:
    """tests/security/test_big_bodies.py sends an oversized body to each of these surfaces."""
    missing = [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "requestBody" in operation
        and "413" not in operation["responses"]
    ]  # fmt: skip
    assert missing == []


def test_every_admin_body_over_the_limit_is_a_413_problem(
    live: LocalStack, document: dict[str, Any]
) -> None:
    oversized = b'{"reason": "' + b"x" * MAX_ADMIN_BODY_BYTES + b'"}'
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    seen = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not path.startswith("/admin/") or "requestBody" not in operation:
                continue
            url = live.url + _concrete(path, operation, item, document)
            response = httpx.request(method, url, content=oversized, headers=headers, timeout=60)
            assert response.status_code == 413, (method, path, response.text[:200])
            assert response.headers["Content-Type"] == "application/problem+json"
            seen += 1
    assert seen >= 5


SERVICE_SURFACES: dict[str, Surface] = {
    "pubsub": "pubsub", "tasks": "tasks", "cron": "cron",
}  # fmt: skip


def _credential(live: LocalStack, path: str) -> str:
    surface = SERVICE_SURFACES.get(path.split("/")[1])
    return ADMIN_TOKEN if surface is None else service_token(live, surface)


def test_service_operations_declare_the_oidc_bearer(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters" or path.split("/")[1] not in SERVICE_SURFACES:
                continue
            if path == "/emulator/oauth2/v1/certs":
                assert operation["security"] == [], "the certificates are public"
                continue
            assert operation["security"] == [{"oidc": []}], (method, path)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
    scheme = document["components"]["securitySchemes"]["oidc"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")


def test_every_mounted_surface_is_documented(live: LocalStack, document: dict[str, Any]) -> None:
    prefixes = {path.split("/")[1] for path in document["paths"]}
    assert live.server is not None
    mounted = set(live.mounts)
    assert mounted <= prefixes, mounted - prefixes


def _concrete(
    path: str, operation: dict[str, Any], item: dict[str, Any], document: dict[str, Any]
) -> str:
    values = {
        "topic_publish": "events:publish", "project": "local-project", "account_id": "acct-1",
        "dead_letter_id": "1", "replay_id": "1", "source": "stripe", "event_id": "evt_1",
    }  # fmt: skip
    shared = document["components"]["parameters"]
    for declared in [*item.get("parameters", []), *operation.get("parameters", [])]:
        parameter = shared[declared["$ref"].rsplit("/", 1)[-1]] if "$ref" in declared else declared
        if parameter["in"] == "path" and "enum" in parameter["schema"]:
            values[parameter["name"]] = parameter["schema"]["enum"][0]
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    live: LocalStack, document: dict[str, Any], mode: GenerationMode
) -> None:
    """Bounded: at most EXAMPLES cases per operation and mode, on the webhook/admin/health tags."""
    schema = schemathesis.openapi.from_dict(document).include(
        tag_regex="^(" + "|".join(FUZZED_TAGS) + ")$"
    )
    # Authenticated as an operator: the token is configuration, not input to mutate.
    schema.config.update(base_url=live.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    # No NUL characters: PostgreSQL text cannot hold them and the document says so.
    schema.config.generation.update(with_security_parameters=False, allow_x00=False)
    failures: list[str] = []
    operations = unsatisfiable = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: Any) -> None:
            # Auth is covered by test_http_surfaces; here the token is fixed configuration.
            case.call_and_validate(excluded_checks=[ignored_auth])

        try:
            exercise()
        except Unsatisfiable:
            # Negative mode: an operation with nothing to violate (no parameters, any body).
            assert mode is GenerationMode.NEGATIVE, operation.label
            unsatisfiable += 1
        except Exception as exc:  # collect every operation's failure, not just the first
            failures.append(f"{operation.label}: {exc}")
    assert operations - unsatisfiable >= 6
    assert not failures, "\n\n".join(failures)
