"""Ledger change -> outbox -> named task -> signed notification, on the real stack."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from standardwebhooks.webhooks import Webhook

from common.db import outbox
from common.messaging.local_wiring import LocalWiring
from common.outbox_relay import OutboxRelay
from tests.support.postgres import TestServer
from tests.support.receiver import Receiver, receiver
from tests.support.stack import (
    admin,
    running_stack,
    service_headers,
    signed_stripe,
    stripe_event,
    wait_for,
)


def _signing_key(tmp_path: Path) -> str:
    return (tmp_path / "data" / "secrets" / "notify-signing-key").read_text().strip()


def _verify(hook: Receiver, key: str) -> list[dict[str, object]]:
    """Every notification must verify with the reference library; returns the bodies."""
    bodies = []
    for item in hook.received:
        Webhook(key).verify(item.body, item.headers)
        bodies.append(json.loads(item.body))
    return bodies


def test_one_signed_notification_per_change_despite_receiver_failures(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path
) -> None:
    with (
        receiver(statuses=[500, 503]) as hook,
        running_stack(pg_server, database, tmp_path) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=60)) as client,
    ):
        client.put("/admin/accounts/n1", json={"currency": "usd", "notify_url": hook.url})
        for i, amount in enumerate([100, 250]):
            body = stripe_event(
                f"evt_n{i}", "payment_intent.succeeded", "n1", amount_received=amount
            )
            for _ in range(2):  # the sender retries: the event (and its notification) once
                assert (
                    client.post(
                        "/webhooks/stripe", content=body, headers=signed_stripe(body)
                    ).status_code
                    == 202
                )
        wait_for(lambda: client.get("/admin/accounts/n1").json()["pending_notifications"] == 0
                 and len(hook.received) >= 4, timeout=60)  # fmt: skip
    bodies = _verify(hook, _signing_key(tmp_path))
    delivered = [
        r
        for r, status in zip(hook.received, [500, 503, 204, 204, 204], strict=False)
        if status < 300
    ]
    ids = [r.headers["Webhook-Id"] for r in hook.received]
    assert len(set(ids)) == 2, ids  # two ledger changes, each retried under one webhook-id
    assert len(delivered) == 2
    assert sorted(b["available"] for b in bodies)[-1] == 350
    assert {b["caused_by"] for b in bodies} == {"evt_n0", "evt_n1"}
    assert all(b["type"] == "balance.updated" and b["account_id"] == "n1" for b in bodies)
    with engine.connect() as conn:
        states = conn.execute(sa.text("SELECT state, attempts FROM outbox ORDER BY id")).all()
        attempts = conn.execute(sa.text("SELECT count(*) FROM notification_attempts")).scalar_one()
    assert [s.state for s in states] == ["delivered", "delivered"]
    assert attempts == 4


def test_relaying_twice_sends_once_and_the_sweeper_catches_orphans(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path
) -> None:
    with (
        receiver() as hook,
        running_stack(pg_server, database, tmp_path) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=60)) as client,
    ):
        client.put("/admin/accounts/n2", json={"currency": "usd", "notify_url": hook.url})
        body = stripe_event("evt_r", "payment_intent.succeeded", "n2", amount_received=7)
        client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))
        wait_for(lambda: len(hook.received) == 1, timeout=60)
        with engine.connect() as conn:
            [row_id] = conn.execute(sa.text("SELECT id FROM outbox")).scalars().all()
        queue = LocalWiring(stack.url, stack.url, stack.pubsub_emulator_host).task_queue(
            stack.settings
        )
        relay = OutboxRelay(engine, queue)
        assert relay.relay([row_id]) == 1  # ALREADY_EXISTS counts as relayed
        # A change whose relay never ran (the process died right after commit):
        with engine.begin() as conn:
            orphan = outbox.add(conn, "n2", "balance.updated", {"type": "balance.updated", "n": 2})
            conn.execute(
                sa.text(
                    "UPDATE outbox SET created_at = now() - interval '2 minutes' WHERE id = :id"
                ),
                {"id": orphan},
            )
        assert relay.sweep(older_than_s=60) == 1
        assert relay.sweep(older_than_s=60) == 0
        wait_for(lambda: len(hook.received) == 2, timeout=60)
        assert stack.tasks is not None
        wait_for(lambda: stack.tasks is not None and stack.tasks.pending_count() == 0, timeout=60)
    assert [r.headers["Webhook-Id"] for r in hook.received] == [str(row_id), str(orphan)]
    _verify(hook, _signing_key(tmp_path))


def test_gone_disables_the_endpoint(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path
) -> None:
    with (
        receiver(statuses=[410]) as hook,
        running_stack(pg_server, database, tmp_path) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=60)) as client,
    ):
        client.put("/admin/accounts/n3", json={"currency": "usd", "notify_url": hook.url})
        for n, event_id in enumerate(("evt_g1", "evt_g2"), start=1):
            body = stripe_event(event_id, "payment_intent.succeeded", "n3", amount_received=1)
            client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))

            def settled(n: int = n) -> bool:
                account = client.get("/admin/accounts/n3").json()
                return bool(account["available"] == n and account["pending_notifications"] == 0)

            wait_for(settled, timeout=60)
    assert len(hook.received) == 1
    with engine.connect() as conn:
        states = conn.execute(sa.text("SELECT state FROM outbox ORDER BY id")).scalars().all()
        disabled = conn.execute(
            sa.text("SELECT notify_disabled_at FROM accounts WHERE id = 'n3'")
        ).scalar_one()
    assert states == ["disabled"]
    assert disabled is not None


def test_task_worker_retries_then_dead_letters_on_the_last_attempt(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path
) -> None:
    from tests.support.stack import free_port

    closed = f"http://127.0.0.1:{free_port()}/nobody-listens"
    with (
        running_stack(pg_server, database, tmp_path) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=60)) as client,
    ):
        client.put("/admin/accounts/n4", json={"currency": "usd", "notify_url": closed})
        assert stack.tasks is not None
        stack.tasks.pause("notifications")  # drive the endpoint by hand, as the queue would
        with engine.begin() as conn:
            row_id = outbox.add(conn, "n4", "balance.updated", {"type": "balance.updated"})
        task = {
            "Content-Type": "application/json", "X-CloudTasks-TaskName": f"outbox-{row_id}",
            **service_headers(stack, "tasks"),
        }  # fmt: skip
        body = json.dumps({"outbox_id": row_id})
        first = client.post("/tasks/notifications", content=body,
                            headers={**task, "X-CloudTasks-TaskRetryCount": "0"})  # fmt: skip
        # 500, never 503: Cloud Tasks throttles the whole queue on a 503 (or 429).
        assert first.status_code == 500
        assert first.json()["type"] == "https://hookyard.dev/problems/retry-later"
        last = client.post("/tasks/notifications", content=body,
                           headers={**task, "X-CloudTasks-TaskRetryCount": "19"})  # fmt: skip
        assert last.status_code == 204
        missing = client.post("/tasks/notifications", content=json.dumps({"outbox_id": 10**9}),
                              headers={**task, "X-CloudTasks-TaskName": "outbox-missing",
                                       "X-CloudTasks-TaskRetryCount": "0"})  # fmt: skip
        assert missing.status_code == 204
        dead = client.get("/admin/dead-letters").json()["items"]
    assert [(d["subscription"], d["delivery_count"]) for d in dead] == [
        ("tasks/notifications", 20), ("tasks/notifications", 1),
    ]  # fmt: skip
    assert "ConnectError" in dead[0]["reason"]
    assert "does not exist" in dead[1]["reason"]
