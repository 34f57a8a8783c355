"""The deployed shape, end to end: the four targets as their own gunicorn processes with
`HOOKYARD_ENV=gcp` (`tests.support.deployed_shape`), once per Pub/Sub backend:

- `google`: Google's Pub/Sub emulator (`gcloud beta emulators pubsub start`), skipped with
  the reason where gcloud is not installed. The topology's topics and push subscriptions are
  created on it with the client library, filters, retry and dead-letter policies included;
  the emulator accepts and keeps them all, but it does not apply the filter to pushes (the
  `ledger` subscription is pushed every source's events) and attaches no OIDC token.
- `hookyard`: Hookyard's own broker, published to through its gRPC Publisher API.

Neither backend pushes with a token Google would sign: Google's emulator attaches none and
Hookyard's broker signs with its own key. A push front end (`tests.support.push_front_end`)
therefore stands where Google's push service stands and, as it does, replaces
`Authorization` with a token signed by the test key for the push service account and the
worker's audience (`HOOKYARD_WORKER_URL`). Everything else is what a deployment runs: Cloud
Tasks is Hookyard's emulator reached through `CloudTasksClient` (REST), its tasks' OIDC tokens
signed by the same test key, whose certificates the targets fetch from a local JWKS endpoint;
secrets come from the environment provider.

Notifications: in gcp mode the notifier refuses loopback and private destinations
(`common.egress`; HOOKYARD_NOTIFY_ALLOW_LOOPBACK is refused in gcp), and this machine has no
globally routable address a receiver could listen on. So the notification test proves the
chain up to the notifier's decision: the task created through `CloudTasksClient`, dispatched by
the emulator with a token the worker accepts, and the delivery attempt the notifier recorded
with its refusal; the receiver on loopback is never called.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from common.db import accounts
from common.envelope import build_envelope
from tests.support.deployed_shape import (
    PROJECT,
    PUSH_ACCOUNT,
    SCHEDULER_ACCOUNT,
    TASKS_ACCOUNT,
    DeployedShape,
    deployed_shape,
)
from tests.support.postgres import TestServer
from tests.support.receiver import receiver
from tests.support.stack import ADMIN_TOKEN, signed_stripe, stripe_event, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

HANG_S = 120.0  # bounds against a hang only: a cold JVM and four gunicorns share two cores


@pytest.fixture(scope="module", params=["google", "hookyard"])
def shape(
    request: pytest.FixtureRequest, pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeployedShape]:
    tmp: Path = tmp_path_factory.mktemp(f"shape-{request.param}")
    with deployed_shape(request.param, pg_server, tmp) as running:
        yield running


def _admin(shape: DeployedShape) -> httpx.Client:
    return httpx.Client(
        base_url=shape.url("admin"), timeout=60, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )


def _balance(admin: httpx.Client, account: str) -> int:
    response = admin.get(f"/admin/accounts/{account}")
    assert response.status_code == 200, response.text
    available: int = response.json()["available"]
    return available


def _pay(shape: DeployedShape, event_id: str, account: str, amount: int) -> None:
    body = stripe_event(event_id, "payment_intent.succeeded", account, amount_received=amount)
    sent = httpx.post(
        f"{shape.url('webhook')}/webhooks/stripe",
        content=body, headers=signed_stripe(body), timeout=60,
    )  # fmt: skip
    assert sent.status_code == 202, sent.text
    assert sent.json() == {"status": "accepted", "source": "stripe", "event_id": event_id}


def test_a_payment_is_applied_once_through_pubsub_push(shape: DeployedShape) -> None:
    with _admin(shape) as admin:
        created = admin.put("/admin/accounts/acct_shape_pay", json={"currency": "usd"})
        assert created.status_code == 201, created.text
        _pay(shape, "evt_shape_pay", "acct_shape_pay", 2500)
        wait_for(lambda: _balance(admin, "acct_shape_pay") == 2500, HANG_S, 0.2)

        _pay(shape, "evt_shape_pay", "acct_shape_pay", 2500)  # the sender retries
        # Both copies were pushed, authenticated and acknowledged by the worker...
        wait_for(lambda: shape.front.answered("ledger", "evt_shape_pay", 204) >= 2, HANG_S, 0.2)
        # ...and the second found the inbox row: applied once.
        assert _balance(admin, "acct_shape_pay") == 2500
        event = admin.get("/admin/events/stripe/evt_shape_pay")
        assert event.status_code == 200, event.text
        assert event.json()["outcome"] == "applied"


def test_a_push_without_googles_token_for_the_push_account_is_401(shape: DeployedShape) -> None:
    url, google = shape.worker_url, shape.google
    body = stripe_event(
        "evt_shape_forged", "payment_intent.succeeded", "acct_shape_forged",
        amount_received=1_000_000,
    )  # fmt: skip
    envelope = build_envelope(
        project=PROJECT, subscription="ledger", message_id="forged-1", data=body,
        attributes={"source": "stripe", "event_id": "evt_shape_forged",
                    "event_type": "payment_intent.succeeded"},
        publish_time=datetime.now(UTC), delivery_attempt=1,
    )  # fmt: skip
    refused = {
        "no token": None,
        "another audience": google.token(shape.url("admin"), PUSH_ACCOUNT),
        "another email": google.token(url, TASKS_ACCOUNT),
        "expired": google.token(url, PUSH_ACCOUNT, iat=1_000_000_000, exp=1_000_003_600),
    }
    with _admin(shape) as admin, httpx.Client(base_url=url, timeout=60) as worker:
        created = admin.put("/admin/accounts/acct_shape_forged", json={"currency": "usd"})
        assert created.status_code == 201, created.text
        for case, token in refused.items():
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = worker.post("/pubsub/ledger", json=envelope, headers=headers)
            assert response.status_code == 401, case
            assert response.headers["Content-Type"].startswith("application/problem+json")
            assert token is None or token not in response.text
        assert _balance(admin, "acct_shape_forged") == 0
        assert admin.get("/admin/events/stripe/evt_shape_forged").status_code == 404

        # The same envelope with the push account's token would have been applied.
        good = {"Authorization": f"Bearer {google.token(url, PUSH_ACCOUNT)}"}
        assert worker.post("/pubsub/ledger", json=envelope, headers=good).status_code == 204
        assert _balance(admin, "acct_shape_forged") == 1_000_000


def test_the_outbox_reaches_the_notifier_through_cloud_tasks(shape: DeployedShape) -> None:
    task_url = f"{shape.worker_url}/tasks/notifications"
    with _admin(shape) as admin, receiver() as hook:
        created = admin.put("/admin/accounts/acct_shape_notify", json={"currency": "usd"})
        assert created.status_code == 201, created.text
        # The admin API refuses a loopback notify_url too; set it beneath it, as a name that
        # resolved to a public address when accepted and to loopback now would stand.
        with shape.engine.begin() as conn:
            accounts.update(conn, "acct_shape_notify", "usd", hook.url)
        _pay(shape, "evt_shape_notify", "acct_shape_notify", 900)
        wait_for(lambda: _balance(admin, "acct_shape_notify") == 900, HANG_S, 0.2)

        def ran() -> sa.Row[Any] | None:
            with shape.engine.connect() as conn:
                return conn.execute(
                    sa.text(
                        "SELECT o.id, t.url, t.oidc_email, t.oidc_audience, t.last_status,"
                        " t.outcome FROM outbox o JOIN emulator.tasks t"
                        " ON t.queue = 'notifications' AND t.name = 'outbox-' || o.id"
                        " WHERE o.account_id = 'acct_shape_notify' AND t.outcome IS NOT NULL"
                    )
                ).first()

        row = wait_for(ran, HANG_S, 0.2)
        outbox_id, url, email, audience, status, outcome = row
        # Created through CloudTasksClient with the worker's URL and the tasks account's
        # oidc_token; the worker accepted the emulator's token (no 401) and finished it.
        assert (url, email, audience) == (task_url, TASKS_ACCOUNT, shape.worker_url)
        assert (status, outcome) == (204, "succeeded")
        with shape.engine.connect() as conn:
            attempts = conn.execute(
                sa.text(
                    "SELECT url, status, error FROM notification_attempts WHERE outbox_id = :i"
                ),
                {"i": outbox_id},
            ).all()
        [attempt] = attempts
        assert attempt.status is None
        assert attempt.error == "notify_url refused: points at 127.0.0.1 (loopback)"
        assert hook.received == []


def test_cron_schedules_one_named_task_per_schedule_time(shape: DeployedShape) -> None:
    url, google = shape.url("cron"), shape.google
    schedule = {"X-CloudScheduler-ScheduleTime": "2026-11-23T00:05:00Z"}
    scheduler = {"Authorization": f"Bearer {google.token(shape.worker_url, SCHEDULER_ACCOUNT)}"}
    refused = {
        "no token": {},
        "another email": {
            "Authorization": f"Bearer {google.token(shape.worker_url, PUSH_ACCOUNT)}"
        },
        "another audience": {"Authorization": f"Bearer {google.token(url, SCHEDULER_ACCOUNT)}"},
    }
    with httpx.Client(base_url=url, timeout=60) as cron:
        for case, headers in refused.items():
            response = cron.post("/cron/reconcile", headers={**schedule, **headers})
            assert response.status_code == 401, case
        first = cron.post("/cron/reconcile", headers={**schedule, **scheduler})
        again = cron.post("/cron/reconcile", headers={**schedule, **scheduler})
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "scheduled"
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "already scheduled"
    name = first.json()["task"]
    assert again.json()["task"] == name

    def finished() -> Sequence[sa.Row[Any]] | None:
        with shape.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT name, url, oidc_email, last_status, outcome FROM emulator.tasks"
                    " WHERE queue = 'jobs' AND name LIKE 'reconcile-%'"
                )
            ).all()
        return rows if rows and all(r.outcome is not None for r in rows) else None

    [task] = wait_for(finished, HANG_S, 0.2)
    assert task.name == name
    assert (task.url, task.oidc_email) == (f"{shape.worker_url}/tasks/jobs", TASKS_ACCOUNT)
    assert (task.last_status, task.outcome) == (204, "succeeded")
