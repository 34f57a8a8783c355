"""A scripted run against the production-shaped local stack (each target its own process),
then `GET /metrics` on the front door: every metric the script implies, with its value.

The script: three signed Stripe payments to an account with a notify_url, two forged ones,
one payment for an account that does not exist (a dead letter). Quiet, scrape. Then the
account is created and the dead letter replayed. Quiet, scrape again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hookyard.stack import LocalStack
from tests.support.postgres import TestServer
from tests.support.receiver import Receiver, receiver
from tests.support.stack import (
    admin,
    module_stack,
    signed_stripe,
    stripe_event,
    wait_for,
)

PAID = 3
FORGED = 2
ACCOUNT = "acct_metrics"
MISSING = "acct_metrics_missing"

Samples = list[tuple[str, dict[str, str], float]]


@pytest.fixture(scope="module")
def hook() -> Iterator[Receiver]:
    with receiver() as running:
        yield running


@pytest.fixture(scope="module")
def stack(pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with module_stack(pg_server, tmp_path_factory.mktemp("metrics"), dev_processes=True) as s:
        yield s


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> Iterator[httpx.Client]:
    with admin(httpx.Client(base_url=stack.url, timeout=60)) as c:
        yield c


def send(client: httpx.Client, event_id: str, account: str, *, forged: bool = False) -> int:
    body = stripe_event(event_id, "payment_intent.succeeded", account, amount_received=100)
    headers = signed_stripe(body, secret="whsec_forged") if forged else signed_stripe(body)
    return client.post("/webhooks/stripe", content=body, headers=headers).status_code


def quiet(client: httpx.Client) -> bool:
    """Nothing waits in any subscription or queue but the scheduler's own `jobs`."""
    stats = client.get("/admin/stats").json()
    waiting = [f["backlog"] for f in stats["subscriptions"].values()]
    waiting += [f["backlog"] for name, f in stats["queues"].items() if name != "jobs"]
    return not any(waiting)


def scrape(client: httpx.Client) -> tuple[str, Samples]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    samples = [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]
    return text, samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """Summed over every series (and target) that carries `labels`."""
    return sum(
        value
        for n, found, value in samples
        if n == name and all(found.get(k) == v for k, v in labels.items())
    )


def targets(samples: Samples, name: str) -> set[str]:
    return {found["target"] for n, found, _ in samples if n == name}


@pytest.fixture(scope="module")
def first_scrape(client: httpx.Client, hook: Receiver) -> tuple[str, Samples]:
    account = {"currency": "usd", "notify_url": hook.url}
    assert client.put(f"/admin/accounts/{ACCOUNT}", json=account).status_code == 201
    assert [send(client, f"evt_m_paid_{i}", ACCOUNT) for i in range(PAID)] == [202] * PAID
    assert [send(client, f"evt_m_forged_{i}", ACCOUNT, forged=True) for i in range(FORGED)] == [
        401
    ] * FORGED
    assert send(client, "evt_m_missing", MISSING) == 202
    wait_for(lambda: len(hook.received) >= PAID and quiet(client), timeout=120)
    wait_for(lambda: client.get("/admin/stats").json()["dead_letters"]["by_state"], timeout=120)
    return scrape(client)


def test_every_family_has_one_help_and_type(first_scrape: tuple[str, Samples]) -> None:
    text, _ = first_scrape
    types = re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE)
    helps = re.findall(r"^# HELP (\S+) ", text, flags=re.MULTILINE)
    assert types
    assert len(types) == len(set(types))
    assert sorted(helps) == sorted(types)


def test_webhooks_by_source_and_reason(first_scrape: tuple[str, Samples]) -> None:
    _, samples = first_scrape
    received = "hookyard_webhooks_received_total"
    assert total(samples, received, source="stripe") == PAID + FORGED + 1
    assert total(samples, "hookyard_webhooks_accepted_total", source="stripe") == PAID + 1
    rejected = "hookyard_webhooks_rejected_total"
    assert total(samples, rejected, source="stripe", reason="invalid-signature") == FORGED
    assert total(samples, rejected, source="stripe") == FORGED
    assert targets(samples, received) == {"webhook"}


def test_publishes_pushes_acks_and_handlers(first_scrape: tuple[str, Samples]) -> None:
    _, samples = first_scrape
    published = "hookyard_publish_duration_seconds_count"
    assert total(samples, published, topic="events", outcome="ok") == PAID + 1
    assert total(samples, published) == PAID + 1
    attempts = "hookyard_push_attempts_total"
    assert total(samples, attempts, subscription="ledger", outcome="ack") == PAID
    assert total(samples, attempts, subscription="ledger", outcome="dead_letter") == 1
    assert total(samples, attempts, subscription="event-log", outcome="ack") == PAID + 1
    assert total(samples, attempts, outcome="nack") == 0
    assert total(samples, "hookyard_push_retries_total") == 0
    latency = "hookyard_push_ack_latency_seconds_count"
    assert total(samples, latency, subscription="ledger") == PAID + 1
    assert total(samples, latency, subscription="event-log") == PAID + 1
    outcomes = "hookyard_handler_outcomes_total"
    assert total(samples, outcomes, handler="ledger", outcome="applied") == PAID
    assert total(samples, outcomes, handler="ledger", outcome="dead_letter") == 1
    assert total(samples, outcomes, handler="event-log", outcome="applied") == PAID + 1
    assert targets(samples, attempts) == {"worker"}


def test_notification_tasks(first_scrape: tuple[str, Samples]) -> None:
    _, samples = first_scrape
    tasks = "hookyard_task_attempts_total"
    assert total(samples, tasks, queue="notifications", outcome="done") == PAID
    assert total(samples, tasks, queue="notifications") == PAID
    assert total(samples, "hookyard_task_retries_total", queue="notifications") == 0


def test_gauges_at_quiet(first_scrape: tuple[str, Samples]) -> None:
    _, samples = first_scrape
    for subscription in ("ledger", "event-log"):
        assert ("hookyard_subscription_backlog", "admin", subscription) in {
            (n, labels["target"], labels.get("subscription")) for n, labels, _ in samples
        }
        assert total(samples, "hookyard_subscription_backlog", subscription=subscription) == 0
        age = "hookyard_subscription_oldest_unacked_age_seconds"
        assert total(samples, age, subscription=subscription) == 0
    assert total(samples, "hookyard_queue_backlog", queue="notifications") == 0
    assert total(samples, "hookyard_queue_oldest_age_seconds", queue="notifications") == 0
    dead = "hookyard_dead_letters"
    reason = "unknown account '…'"
    assert total(samples, dead, state="pending", reason=reason) == 1
    assert total(samples, dead) == 1
    assert total(samples, "hookyard_outbox_lag_seconds", outbox="notifications") == 0
    assert total(samples, "hookyard_outbox_lag_seconds", outbox="messages") == 0
    assert targets(samples, dead) == {"admin"}


def test_replay_progress_after_the_account_exists(
    first_scrape: tuple[str, Samples], client: httpx.Client, hook: Receiver
) -> None:
    created = client.put(f"/admin/accounts/{MISSING}", json={"currency": "usd", "notify_url": None})
    assert created.status_code == 201
    pending = client.get("/admin/dead-letters", params={"state": "pending"}).json()["items"]
    started = client.post(
        "/admin/dead-letters/replay",
        json={"ids": [row["id"] for row in pending], "reason": "account created"},
    ).json()
    replay = f"/admin/replays/{started['replay_id']}"
    wait_for(lambda: client.get(replay).json()["state"] == "done", timeout=120)
    wait_for(lambda: client.get(f"/admin/accounts/{MISSING}").json()["available"] == 100)
    wait_for(lambda: quiet(client), timeout=120)
    dead = "hookyard_dead_letters"
    # The gauges read the database at most every few seconds: wait for the new reading.
    samples = wait_for(lambda: _replayed(scrape(client)[1]), timeout=120)
    assert total(samples, "hookyard_replay_messages_total", outcome="republished") == 1
    assert total(samples, "hookyard_replay_messages_total", outcome="failed") == 0
    published = "hookyard_publish_duration_seconds_count"
    assert total(samples, published, topic="events") == PAID + 2
    assert total(samples, published, topic="events", target="worker") == 1
    outcomes = "hookyard_handler_outcomes_total"
    assert total(samples, outcomes, handler="ledger", outcome="applied") == PAID + 1
    assert total(samples, "hookyard_task_attempts_total", queue="replays", outcome="done") == 2
    assert total(samples, dead, state="replayed", reason="unknown account '…'") == 1
    assert total(samples, dead, state="pending") == 0


def _replayed(samples: Samples) -> Samples | None:
    return samples if total(samples, "hookyard_dead_letters", state="replayed") else None
