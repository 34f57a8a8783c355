"""An event id means one payload, and the ledger takes only the sources it understands,
whatever the subscription filter says."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from hookyard.stack import LocalStack
from tests.support.stack import (
    admin,
    service_headers,
    signed_stripe,
    stripe_event,
    wait_for,
)


@pytest.fixture
def client(stack: LocalStack) -> Iterator[httpx.Client]:
    with admin(httpx.Client(base_url=stack.url, timeout=60)) as c:
        assert c.put("/admin/accounts/acct_1", json={"currency": "usd"}).status_code == 201
        yield c


def dead_letters(client: httpx.Client) -> list[dict[str, Any]]:
    return list(client.get("/admin/dead-letters").json()["items"])


def test_same_event_id_with_a_different_body_is_never_applied_and_never_silent(
    client: httpx.Client,
) -> None:
    first = stripe_event("evt_twice", "payment_intent.succeeded", "acct_1", amount_received=100)
    second = stripe_event("evt_twice", "payment_intent.succeeded", "acct_1", amount_received=9999)
    sent = client.post("/webhooks/stripe", content=first, headers=signed_stripe(first))
    assert sent.status_code == 202
    # Applied by the ledger and recorded by the event log, each from the first body.
    wait_for(lambda: client.get("/admin/accounts/acct_1").json()["available"] == 100, 120)
    wait_for(lambda: client.get("/admin/events/stripe/evt_twice").status_code == 200, 120)
    resent = client.post("/webhooks/stripe", content=second, headers=signed_stripe(second))
    assert resent.status_code == 202

    def both_refused() -> list[dict[str, Any]]:
        rows = dead_letters(client)
        return rows if {r["subscription"] for r in rows} == {"ledger", "event-log"} else []

    rows = wait_for(both_refused, timeout=120)
    for row in rows:
        assert row["reason"] == "same event id, different payload"
        assert row["event_id"] == "evt_twice"
        shown = client.get(f"/admin/dead-letters/{row['id']}").json()
        assert shown["data"].encode() == second
    assert client.get("/admin/accounts/acct_1").json()["available"] == 100
    event = client.get("/admin/events/stripe/evt_twice").json()
    assert event["body_sha256"] == hashlib.sha256(first).hexdigest()
    # The same body again is an ordinary duplicate: nothing new is dead-lettered.
    assert client.post("/webhooks/stripe", content=first, headers=signed_stripe(first)).is_success
    assert len(dead_letters(client)) == 2


def test_a_handler_acknowledges_another_sources_event_without_effect(
    stack: LocalStack, client: httpx.Client
) -> None:
    """Pushed straight to the ledger's endpoint, as an emulator that does not filter would
    (Google's does not): the ledger neither applies it nor dead-letters it."""
    body = json.dumps(
        {"type": "payment_intent.succeeded", "data": {"object": {
            "amount_received": 500, "currency": "usd", "metadata": {"account_id": "acct_1"}}}}
    ).encode()  # fmt: skip
    envelope = {
        "message": {
            "data": base64.b64encode(body).decode(),
            "messageId": "m-standard",
            "attributes": {"source": "standard", "event_id": "msg_1"},
        },
        "subscription": "projects/local-project/subscriptions/ledger",
    }
    response = client.post(
        "/pubsub/ledger", json=envelope, headers=service_headers(stack, "pubsub")
    )
    assert response.status_code == 204, response.text
    assert dead_letters(client) == []
    assert client.get("/admin/accounts/acct_1").json()["available"] == 0
    engine = stack.engine
    assert engine is not None
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM inbox")).scalar() == 0
