"""At-least-once delivery through the real broker, worker and ledger on real PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from common.envelope import PushEnvelope
from common.errors import TransientError
from tests.support.postgres import TestServer
from tests.support.stack import (
    admin,
    fast_topology,
    running_stack,
    service_headers,
    signed_stripe,
    stripe_event,
    wait_for,
)


def _balance(client: httpx.Client, account: str) -> int:
    response = client.get(f"/admin/accounts/{account}")
    assert response.status_code == 200, response.text
    return int(response.json()["available"])


def _post_event(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))


def test_two_failed_deliveries_then_applied_once(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path
) -> None:
    attempts: Counter[str] = Counter()
    seen_attempt_numbers: list[int | None] = []

    def flaky(envelope: PushEnvelope) -> None:
        if envelope.short_subscription != "ledger":
            return
        attempts[envelope.message.message_id] += 1
        seen_attempt_numbers.append(envelope.delivery_attempt)
        if attempts[envelope.message.message_id] <= 2:
            raise TransientError("injected failure")

    with (
        running_stack(
            pg_server, database, tmp_path, topology=fast_topology(), worker_hook=flaky
        ) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=60)) as client,
    ):
        assert client.put("/admin/accounts/acct_a", json={"currency": "usd"}).status_code == 201
        body = stripe_event("evt_flaky", "payment_intent.succeeded", "acct_a", amount_received=1234)
        assert _post_event(client, body).status_code == 202
        wait_for(lambda: _balance(client, "acct_a") == 1234)
        assert stack.broker is not None
        wait_for(lambda: stack.broker is not None and stack.broker.pending_count() == 0)
    assert seen_attempt_numbers == [1, 2, 3]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ledger_transactions")).scalar_one() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar_one() == 0


def test_exhausted_attempts_reach_dead_letters_with_attributes(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path
) -> None:
    def always_fail(envelope: PushEnvelope) -> None:
        if envelope.short_subscription == "ledger":
            raise TransientError("downstream is down")

    with (
        running_stack(
            pg_server, database, tmp_path, topology=fast_topology(5), worker_hook=always_fail
        ) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=60)) as client,
    ):
        client.put("/admin/accounts/acct_b", json={"currency": "usd"})
        body = stripe_event("evt_doomed", "payment_intent.succeeded", "acct_b", amount_received=5)
        assert _post_event(client, body).status_code == 202
        items = wait_for(lambda: client.get("/admin/dead-letters").json()["items"])
        assert _balance(client, "acct_b") == 0
    [item] = items
    assert item["origin"] == "broker"
    assert item["subscription"] == "ledger"
    assert item["delivery_count"] == 5
    assert item["event_id"] == "evt_doomed"
    assert item["source"] == "stripe"
    attrs = item["attributes"]
    assert attrs["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert attrs["CloudPubSubDeadLetterSourceSubscription"] == "ledger"
    assert attrs["event_type"] == "payment_intent.succeeded"
    assert "traceparent" in attrs
    with engine.connect() as conn:
        data = conn.execute(sa.text("SELECT data FROM dead_letters")).scalar_one()
    assert bytes(data) == body


def test_same_message_to_eight_threads_has_one_effect(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path
) -> None:
    with (
        running_stack(pg_server, database, tmp_path) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=60)) as client,
    ):
        client.put("/admin/accounts/acct_c", json={"currency": "usd"})
        from datetime import UTC, datetime

        from common.envelope import build_envelope

        body = stripe_event("evt_race", "payment_intent.succeeded", "acct_c", amount_received=700)
        envelope = build_envelope(
            project="local-project",
            subscription="ledger",
            message_id="race-1",
            data=body,
            attributes={
                "source": "stripe",
                "event_id": "evt_race",
                "event_type": "payment_intent.succeeded",
            },
            publish_time=datetime.now(UTC),
            delivery_attempt=1,
        )
        barrier = threading.Barrier(8)
        statuses: list[int] = []

        push_auth = service_headers(stack, "pubsub")

        def deliver() -> None:
            with httpx.Client(base_url=stack.url, timeout=60) as own:
                barrier.wait()
                pushed = own.post("/pubsub/ledger", json=envelope, headers=push_auth)
                statuses.append(pushed.status_code)

        threads = [threading.Thread(target=deliver) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert statuses == [204] * 8
        assert _balance(client, "acct_c") == 700
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ledger_transactions")).scalar_one() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM inbox")).scalar_one() == 1
