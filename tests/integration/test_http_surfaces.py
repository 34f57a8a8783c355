"""Webhook, admin and health endpoints over a real socket, on the real stack."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common.messaging.pubsub import PubSubPublisher
from common.secrets import EnvSecretStore
from common.topology import get_topology
from functions.webhooks import WebhookIngest
from hookyard.server import create_app
from hookyard.stack import LocalStack
from tests.support.postgres import TestServer
from tests.support.stack import (
    ADMIN_TOKEN,
    STANDARD_SECRET,
    admin,
    free_port,
    running_stack,
    signed_stripe,
    stripe_event,
)

PROBLEM = "application/problem+json"


@pytest.fixture
def stack(pg_server: TestServer, database: str, tmp_path: Path) -> Iterator[LocalStack]:
    with running_stack(pg_server, database, tmp_path) as running:
        yield running


@pytest.fixture
def client(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=60) as c:
        yield c


def assert_problem(response: httpx.Response, status: int, fragment: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert fragment in body["detail"]
    return dict(body)


def test_signed_stripe_event_is_accepted(client: httpx.Client) -> None:
    body = stripe_event("evt_ok", "payment_intent.succeeded", "a", amount_received=1)
    response = client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))
    assert response.status_code == 202
    assert response.json() == {"status": "accepted", "source": "stripe", "event_id": "evt_ok"}
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_signature_failures_are_401_without_leaking(client: httpx.Client) -> None:
    body = stripe_event("evt_forged", "payment_intent.succeeded", "a", amount_received=1)
    forged = signed_stripe(body, secret="whsec_attacker")
    problem = assert_problem(client.post("/webhooks/stripe", content=body, headers=forged), 401, "")
    assert forged["Stripe-Signature"].split("v1=")[1] not in json.dumps(problem)
    missing = client.post(
        "/webhooks/stripe", content=body, headers={"Content-Type": "application/json"}
    )
    assert_problem(missing, 401, "")
    stale = signed_stripe(body, now=int(time.time()) - 3600)
    assert_problem(client.post("/webhooks/stripe", content=body, headers=stale), 401, "tolerance")


def test_size_limit_is_413_before_verification(client: httpx.Client) -> None:
    body = b"{" + b" " * (1024 * 1024) + b"}"
    response = client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))
    assert_problem(response, 413, "limit")


def test_invalid_json_and_missing_id_are_400(client: httpx.Client) -> None:
    bad = b"{not json"
    assert_problem(
        client.post("/webhooks/stripe", content=bad, headers=signed_stripe(bad)), 400, "JSON"
    )
    no_id = b'{"type": "payment_intent.succeeded"}'
    problem = assert_problem(
        client.post("/webhooks/stripe", content=no_id, headers=signed_stripe(no_id)), 400, "/id"
    )
    assert problem["field"] == "JSON field /id"


def test_unknown_source_404_and_wrong_method_405(client: httpx.Client) -> None:
    assert_problem(client.post("/webhooks/nobody", content=b"{}"), 404, "nobody")
    response = client.get("/webhooks/stripe")
    assert_problem(response, 405, "GET")
    assert response.headers["Allow"] == "POST"


def test_standard_webhooks_source_uses_header_id(client: httpx.Client) -> None:
    from common.signatures.signing import sign_headers

    body = b'{"type":"invoice.paid","data":{}}'
    headers = sign_headers(
        "standard-webhooks", body, STANDARD_SECRET, now=int(time.time()), event_id="msg_123"
    )
    headers["Content-Type"] = "application/json"
    response = client.post("/webhooks/standard", content=body, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["event_id"] == "msg_123"


def test_publish_failure_is_503(tmp_path: Path) -> None:
    import threading

    from werkzeug.serving import make_server

    dead_broker = f"127.0.0.1:{free_port()}"
    ingest = WebhookIngest(
        get_topology(), EnvSecretStore(), PubSubPublisher("p", 2, emulator_host=dead_broker)
    )
    server = make_server("127.0.0.1", 0, create_app({"webhooks": ingest.handle}), threaded=True)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        body = stripe_event("evt_503", "payment_intent.succeeded", "a", amount_received=1)
        response = httpx.post(
            f"http://127.0.0.1:{server.server_port}/webhooks/stripe",
            content=body,
            headers=signed_stripe(body),
        )
        assert_problem(response, 503, "retry")
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_admin_requires_the_token(client: httpx.Client) -> None:
    assert_problem(client.get("/admin/accounts/a"), 401, "bearer")
    wrong = client.get("/admin/accounts/a", headers={"Authorization": "Bearer nope"})
    assert_problem(wrong, 401, "invalid")
    assert ADMIN_TOKEN not in wrong.text


def test_admin_accounts_lifecycle(client: httpx.Client) -> None:
    admin(client)
    assert_problem(client.get("/admin/accounts/acct_1"), 404, "acct_1")
    created = client.put("/admin/accounts/acct_1", json={"currency": "USD", "notify_url": None})
    assert created.status_code == 201
    assert created.json() == {
        "id": "acct_1", "currency": "usd", "notify_url": None, "available": 0, "held": 0,
    }  # fmt: skip
    updated = client.put(
        "/admin/accounts/acct_1", json={"currency": "usd", "notify_url": "https://example.com/hook"}
    )
    assert updated.status_code == 200
    assert updated.json()["notify_url"] == "https://example.com/hook"
    assert client.get("/admin/accounts/acct_1").json()["available"] == 0
    assert_problem(
        client.put("/admin/accounts/acct_1", json={"currency": "dollars"}), 400, "currency"
    )
    broken = client.put(
        "/admin/accounts/acct_1", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert_problem(broken, 400, "")
    assert_problem(
        client.put("/admin/accounts/bad%20id", json={"currency": "usd"}), 400, "account id"
    )
    assert_problem(client.get("/admin/dead-letters?limit=0"), 400, "limit")
    assert client.get("/admin/dead-letters").json() == {"items": [], "next_cursor": None}


def test_health_probes(client: httpx.Client) -> None:
    assert client.get("/health/live").json() == {"status": "live"}
    assert client.get("/health/ready").json() == {"status": "ready"}
    assert_problem(client.get("/nowhere"), 404, "no route")


def test_logs_carry_the_trace_and_never_the_secret(
    client: httpx.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    from tests.support.stack import STRIPE_SECRET

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    body = stripe_event("evt_logged", "payment_intent.succeeded", "nobody", amount_received=1)
    good = {**signed_stripe(body), "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    forged = signed_stripe(body, secret="whsec_attacker")
    assert client.post("/webhooks/stripe", content=body, headers=good).status_code == 202
    assert client.post("/webhooks/stripe", content=body, headers=forged).status_code == 401
    lines = [
        json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")
    ]
    accepted = next(line for line in lines if line["message"] == "webhook accepted")
    assert accepted["severity"] == "INFO"
    assert accepted["logging.googleapis.com/trace"].endswith(f"/traces/{trace_id}")
    assert accepted["event_id"] == "evt_logged"
    rejected = next(line for line in lines if line["message"] == "webhook rejected")
    assert rejected["severity"] == "WARNING"
    assert rejected["status"] == 401
    everything = json.dumps(lines)
    for secret in (STRIPE_SECRET, good["Stripe-Signature"], forged["Stripe-Signature"]):
        assert secret not in everything


def test_chunked_body_over_the_limit_is_413_without_reading_it_all(client: httpx.Client) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(64):  # 4 MiB offered, the limit is 1 MiB
            sent += 65536
            yield b" " * 65536

    response = client.post(
        "/webhooks/stripe", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413, "limit")
    assert "content-length" not in {k.lower() for k in response.request.headers}
