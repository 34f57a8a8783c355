"""Issue #14's story: three senders' events each reach their handler once and the event log,
where a JSON path finds each; `hookyard listen` forwards each to a local app, signed; a
handler that fails dead-letters its own delivery alone, and a replay re-runs only it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from standardwebhooks.webhooks import Webhook

from common.topology import Topology, get_topology
from hookyard.sender import sender_request
from hookyard.stack import LocalStack
from tests.support import flaky_handler
from tests.support.listen_process import by_event, listening
from tests.support.postgres import TestServer
from tests.support.receiver import receiver
from tests.support.stack import SOURCE_SECRETS, admin, running_stack, stripe_event, wait_for

SHA = "a" * 40


def story_topology() -> Topology:
    """The shipped one plus a second handler of Stripe payments that can be broken."""
    raw = get_topology().model_dump()
    raw["handlers"].append(
        {"name": "payment-audit", "module": "tests.support.flaky_handler:handle",
         "events": {"stripe": ["payment_intent.succeeded"]}}
    )  # fmt: skip
    return Topology.model_validate(raw)


@pytest.fixture
def stack(pg_server: TestServer, database: str, tmp_path: Path) -> Iterator[LocalStack]:
    flaky_handler.broken = True
    flaky_handler.calls.clear()
    with running_stack(pg_server, database, tmp_path, topology=story_topology()) as running:
        yield running


def send(
    stack: LocalStack,
    source: str,
    body: bytes,
    event_type: str | None = None,
    event_id: str | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec = get_topology().source(source)
    assert spec is not None
    secret = SOURCE_SECRETS["HOOKYARD_SECRET_" + spec.secret.upper().replace("-", "_")]
    url, headers = sender_request(
        spec, body, secret, now=int(time.time()), url=f"{stack.url}/webhooks/{source}",
        event_id=event_id, event_type=event_type,
    )  # fmt: skip
    response = httpx.post(url, content=body, headers={**headers, **(extra or {})}, timeout=60)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def test_three_senders_each_handler_once_and_a_failing_handler_alone(
    stack: LocalStack, tmp_path: Path
) -> None:
    engine = stack.engine
    assert engine is not None
    client = admin(httpx.Client(base_url=stack.url, timeout=60))
    assert client.put("/admin/accounts/acct_1", json={"currency": "usd"}).status_code in (200, 201)
    with (
        receiver() as app_server,
        listening(
            stack, tmp_path / "listen", "--forward-to", f"{app_server.url}/hooks", "--json"
        ) as listen,
    ):
        signing_secret = listen.secret()
        sent = _story(stack, client, engine)
        # `listen` forwarded each event once, signed with the key it printed.
        lines = listen.lines(3)
        assert sorted((line["source"], line["status"]) for line in lines) == [
            ("github", 204), ("shopify", 204), ("stripe", 204),
        ]  # fmt: skip
        forwarded = by_event(app_server.received)
        assert sorted(forwarded) == sorted(sent.values())
        for requests in forwarded.values():
            [request] = requests
            Webhook(signing_secret).verify(request.body, request.headers, json_parse=False)
        assert listen.stop() == 0


def _story(stack: LocalStack, client: httpx.Client, engine: Engine) -> dict[str, str]:
    payment = stripe_event(f"evt_{uuid.uuid4().hex[:12]}", "payment_intent.succeeded", "acct_1",
                           amount_received=2500)  # fmt: skip
    push = json.dumps({
        "ref": "refs/heads/main", "after": SHA, "repository": {"full_name": "octo/app"},
        "pusher": {"name": "mona"},
    }).encode()  # fmt: skip
    order = json.dumps(
        {"id": 5551, "line_items": [{"id": 1, "sku": "MUG", "quantity": 2}]}
    ).encode()
    sent = {
        "stripe": send(stack, "stripe", payment)["event_id"],
        "github": send(stack, "github", push, "push")["event_id"],
        "shopify": send(stack, "shopify", order, "orders/create",
                        extra={"X-Shopify-Shop-Domain": "mugs.myshopify.com"})["event_id"],
    }  # fmt: skip

    # Each is in the event log, with the exact bytes.
    for source, body in (("stripe", payment), ("github", push), ("shopify", order)):
        path = f"/admin/events/{source}/{sent[source]}/payload"
        stored = wait_for(lambda p=path: (r := client.get(p)).status_code == 200 and r)
        assert stored.content == body

    # A JSON path finds exactly the right event, and each event lists its handlers.
    for path, source in (
        ("data.object.metadata.account_id=acct_1", "stripe"),
        ("repository.full_name=octo/app", "github"),
        ("line_items.sku=MUG", None),  # paths go through objects, not into arrays
    ):
        found = client.get("/admin/events", params={"path": path}).json()["items"]
        assert [(e["source"], e["event_id"]) for e in found] == (
            [(source, sent[source])] if source else []
        ), path

    # Each example handler ran once.
    wait_for(lambda: client.get("/admin/accounts/acct_1").json()["available"] == 2500)
    wait_for(lambda: scalar(engine, "SELECT count(*) FROM stock_reservations") == 1)
    assert scalar(engine, "SELECT quantity FROM stock_reservations WHERE sku = 'MUG'") == 2
    published = wait_for(
        lambda: scalar(engine, "SELECT message_id FROM outbound_messages"
                               " WHERE topic = 'build-requests' AND published_at IS NOT NULL")
    )  # fmt: skip
    assert scalar(engine, "SELECT count(*) FROM outbound_messages") == 1
    assert (
        scalar(
            engine,
            "SELECT data FROM emulator.messages WHERE id = CAST(:id AS bigint)",
            id=published,
        )
        is not None
    )  # the broker has it

    # The broken audit handler dead-lettered its own delivery; the ledger applied the same event.
    def audit_dead_letter() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = client.get(
            "/admin/dead-letters", params={"subscription": "payment-audit"}
        ).json()["items"]
        return items

    [dead] = wait_for(audit_dead_letter)
    assert dead["event_id"] == sent["stripe"]
    assert "audit rules are broken" in (dead.get("reason") or dead.get("error_message") or "")
    assert client.get("/admin/dead-letters").json()["items"] == [dead]
    ledger_rows = scalar(engine, "SELECT count(*) FROM inbox WHERE subscription = 'ledger'")
    assert flaky_handler.calls == [sent["stripe"]]

    # Mended, the dead letter is replayed: only the audit handler runs again.
    flaky_handler.broken = False
    replay = client.post(
        "/admin/dead-letters/replay",
        json={"ids": [dead["id"]], "reason": "audit rules fixed", "max_per_second": 10},
    )
    assert replay.status_code in (200, 202), replay.text
    wait_for(
        lambda: (
            scalar(engine, "SELECT outcome FROM inbox WHERE subscription = 'payment-audit'")
            == "applied"
        )
    )
    assert flaky_handler.calls == [sent["stripe"], sent["stripe"]]
    replayed_to = scalar(
        engine,
        "SELECT array_agg(DISTINCT d.subscription) FROM emulator.deliveries AS d"
        " JOIN emulator.messages AS m ON m.id = d.message_id"
        " WHERE m.attributes ? 'replay_to'",
    )
    assert replayed_to == ["payment-audit"]
    assert scalar(engine, "SELECT count(*) FROM inbox WHERE subscription = 'ledger'") == ledger_rows
    assert client.get("/admin/accounts/acct_1").json()["available"] == 2500
    return sent
