"""The issue's chaos run: thousands of events, duplicated and concurrent, with one poison of
each kind mixed in. Every event that got 202 is applied exactly once or is a dead letter
with a reason, and every balance equals the one computed from the accepted events.

Before the fix, one poison event per 2,400 lost about one other event: the poison left its
pooled connection out of step with the server, and a later event's inbox row committed
without its ledger effect, so its redelivery was acknowledged as a duplicate.
"""

from __future__ import annotations

import base64
import json
import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import sqlalchemy as sa

from common.messaging.pubsub import PubSubPublisher
from hookyard.stack import LocalStack
from tests.support.postgres import TestServer
from tests.support.stack import (
    admin,
    service_headers,
    signed_stripe,
    stripe_event,
    wait_for,
)

EVENTS = 2000
DUPLICATE_SHARE = 0.2
ACCOUNTS = [f"acct_{n:02d}" for n in range(20)]
THREADS = 8


@dataclass(frozen=True)
class Planned:
    event_id: str
    account: str
    delta: int
    body: bytes


def plan(rng: random.Random) -> list[Planned]:
    events = []
    for n in range(EVENTS):
        account = "acct_unknown" if n % 97 == 0 else rng.choice(ACCOUNTS)
        if rng.random() < 0.8:
            amount = rng.randint(1, 50_000)
            body = stripe_event(f"evt_{n}", "payment_intent.succeeded", account,
                                amount_received=amount)  # fmt: skip
            events.append(Planned(f"evt_{n}", account, amount, body))
        else:
            amount = rng.randint(1, 5_000)
            body = stripe_event(f"evt_{n}", "payout.paid", account, amount=amount)
            events.append(Planned(f"evt_{n}", account, -amount, body))
    return events


def poison_event(event_id: str, obj: dict[str, object]) -> bytes:
    return json.dumps({"id": event_id, "type": "charge.refunded", "data": {"object": obj}}).encode()


def poisons(stack: LocalStack) -> list[tuple[str, Callable[[httpx.Client], int]]]:
    """(what, send) pairs; each returns the status the stack answered."""
    meta = {"account_id": ACCOUNTS[0]}

    def webhook(body: bytes) -> Callable[[httpx.Client], int]:
        return lambda c: (
            c.post("/webhooks/stripe", content=body, headers=signed_stripe(body)).status_code
        )

    publisher = PubSubPublisher(
        "local-project", 60, emulator_host=stack.pubsub_emulator_host
    )  # fmt: skip

    def published(body: bytes, attributes: dict[str, str]) -> Callable[[httpx.Client], int]:
        """Straight into the broker through Pub/Sub's API, past the webhook's checks."""

        def send(_client: httpx.Client) -> int:
            publisher.publish("events", body, attributes)
            return 200

        return send

    def pushed(attributes: dict[str, str]) -> Callable[[httpx.Client], int]:
        body = stripe_event("evt_push", "payment_intent.succeeded", ACCOUNTS[0], amount_received=1)
        envelope = {"message": {"data": base64.b64encode(body).decode(), "messageId": "m-poison",
                                "attributes": attributes},
                    "subscription": "projects/local-project/subscriptions/ledger"}  # fmt: skip
        headers = {**service_headers(stack, "pubsub"), "Content-Type": "application/json"}
        raw = json.dumps(envelope)
        return lambda c: c.post("/pubsub/ledger", content=raw, headers=headers).status_code

    stripe = {"source": "stripe"}
    return [
        ("webhook: lone surrogate in metadata.account_id",
         webhook(poison_event("evt_p1", {"id": "ch_1", "amount_refunded": 1, "currency": "usd",
                                         "metadata": {"account_id": "acct_\ud800"}}))),
        ("webhook: NUL in the charge id",
         webhook(poison_event("evt_p2", {"id": "ch_\x00", "amount_refunded": 1,
                                         "currency": "usd", "metadata": meta}))),
        ("webhook: JSON nested 2,000 deep",
         webhook(b"[" * 2000 + b"]" * 2000)),
        ("published: lone surrogate in the charge id",
         published(poison_event("evt_p3", {"id": "ch_\udfff", "amount_refunded": 1,
                                           "currency": "usd", "metadata": meta}),
                   {**stripe, "event_id": "evt_p3"})),
        ("published: lone surrogate in the dispute id",
         published(json.dumps({"id": "evt_p4", "type": "charge.dispute.created", "data": {
             "object": {"id": "dp_\ud801", "amount": 1, "currency": "usd", "metadata": meta}}}
         ).encode(), {**stripe, "event_id": "evt_p4"})),
        ("published: amount beyond bigint",
         published(stripe_event("evt_p5", "payment_intent.succeeded", ACCOUNTS[0],
                                amount_received=2**64), {**stripe, "event_id": "evt_p5"})),
        ("pushed: lone surrogate attribute", pushed({**stripe, "event_id": "evt_\ud800"})),
        ("pushed: NUL in the event type", pushed({**stripe, "event_id": "evt_p6",
                                                  "event_type": "x\x00"})),
        ("admin: since before year 1 in UTC",
         lambda c: c.get("/admin/dead-letters", params={"since": "0001-01-01T00:00:00+01:00"})
         .status_code),
        ("admin: until after year 9999 in UTC",
         lambda c: c.get("/admin/dead-letters", params={"until": "9999-12-31T23:59:59-01:00"})
         .status_code),
        ("admin: a limit of 5,000 digits",
         lambda c: c.get("/admin/dead-letters", params={"limit": "9" * 5000}).status_code),
        ("cron: schedule time before year 1 in UTC",
         lambda c: c.post("/cron/reconcile", headers={
             **service_headers(stack, "cron"),
             "X-CloudScheduler-ScheduleTime": "0001-01-01T00:00:00+01:00"}).status_code),
    ]  # fmt: skip


def test_poison_mixed_into_a_duplicated_concurrent_run_loses_nothing(
    stack: LocalStack, pg_server: TestServer, database: str
) -> None:
    rng = random.Random(11)
    events = plan(rng)
    sends: list[Planned | tuple[str, Callable[[httpx.Client], int]]] = list(events)
    sends += rng.sample(events, int(EVENTS * DUPLICATE_SHARE))
    sends += poisons(stack)
    rng.shuffle(sends)

    with admin(httpx.Client(base_url=stack.url, timeout=60)) as client:
        for account in ACCOUNTS:
            assert client.put(f"/admin/accounts/{account}", json={"currency": "usd"}).is_success

    local = threading.local()
    accepted: set[str] = set()
    poison_status: dict[str, int] = {}
    lock = threading.Lock()

    def send(item: Planned | tuple[str, Callable[[httpx.Client], int]]) -> None:
        if not hasattr(local, "client"):
            local.client = admin(httpx.Client(base_url=stack.url, timeout=60))
        if isinstance(item, Planned):
            response = local.client.post(
                "/webhooks/stripe", content=item.body, headers=signed_stripe(item.body)
            )
            assert response.status_code == 202, response.text
            with lock:
                accepted.add(item.event_id)
        else:
            what, action = item
            status = action(local.client)
            with lock:
                poison_status[what] = status

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(send, sends))

    # Every poison is refused at the edge (4xx) or acknowledged as a dead letter (204/200),
    # never a 5xx.
    assert all(status < 500 for status in poison_status.values()), poison_status
    assert len(poison_status) == len(poisons(stack))

    expected = Counter[str]()
    unknown = set()
    for event in events:
        if event.account == "acct_unknown":
            unknown.add(event.event_id)
        else:
            expected[event.account] += event.delta

    engine = pg_server.engine(database)
    try:

        def settled() -> bool:
            assert stack.broker is not None
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT id, available FROM accounts")).all()
                balances: dict[str, int] = {r.id: r.available for r in rows}
            return stack.broker.pending_count() == 0 and all(
                balances[a] == expected[a] for a in ACCOUNTS
            )

        wait_for(settled, timeout=900, interval=0.5)
        with engine.connect() as conn:
            applied = Counter(
                r.event_id for r in conn.execute(sa.text(
                    "SELECT event_id FROM ledger_transactions WHERE source = 'stripe'"))
            )  # fmt: skip
            inbox_applied = {
                r.event_id for r in conn.execute(sa.text(
                    "SELECT event_id FROM inbox WHERE outcome = 'applied'"))
            }  # fmt: skip
            dead = {
                r.event_id: r.error_message for r in conn.execute(sa.text(
                    "SELECT event_id, error_message FROM dead_letters "
                    "WHERE subscription = 'ledger'"))
            }  # fmt: skip
            logged = {r.event_id for r in conn.execute(sa.text("SELECT event_id FROM event_log"))}
            sums = conn.execute(sa.text(
                "SELECT count(*) FROM (SELECT transaction_id FROM postings "
                "GROUP BY transaction_id HAVING sum(amount) <> 0) AS unbalanced"
            )).scalar_one()  # fmt: skip
    finally:
        engine.dispose()

    assert max(applied.values()) == 1, "an event was applied twice"
    for event_id in accepted:
        if event_id in unknown:
            assert "unknown account" in (dead.get(event_id) or ""), event_id
        else:
            assert applied[event_id] == 1, f"{event_id} got 202 and was lost"
            assert event_id in inbox_applied
    assert accepted <= logged, "the event log misses accepted events"
    assert sums == 0
    for poisoned in ("evt_p3", "evt_p4", "evt_p5"):
        assert poisoned in dead, f"{poisoned} was not dead-lettered"
        assert applied[poisoned] == 0
