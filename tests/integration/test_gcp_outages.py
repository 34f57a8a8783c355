"""The deployed targets (`main.py`, `HOOKYARD_ENV=gcp`) when Google cannot be reached as
configured: no credentials on the machine, or a secret store that cannot answer.

Each target runs behind a real socket with the real client libraries; google-auth finds no
credentials (`tests.support.google_credentials`). What a caller sees must be a 503 problem it
can retry, never a crash, and what was committed must still be announced once the queue works.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
import pytest
import sqlalchemy as sa
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport
from sqlalchemy.engine import Engine

import main
from common.db import accounts, outbox
from common.db.engine import get_engine, set_engine
from common.envelope import build_envelope
from common.errors import SecretUnavailable
from common.job_tasks import job_task
from common.messaging.cloud_tasks import CloudTasksQueue
from common.messaging.publisher import get_publisher
from common.outbox_relay import OutboxRelay
from common.secrets import EnvSecretStore, env_var_for
from common.topology import get_topology
from functions.admin import Admin
from tests.support.google_credentials import without_google_credentials
from tests.support.grpc_fakes import fake_cloud_tasks, fake_publisher
from tests.support.oidc import fake_google
from tests.support.stack import ADMIN_TOKEN, signed_stripe, stripe_event
from tests.support.wsgi import rebuild_targets, serving, target_app
from workers.jobs import JobRunner

pytestmark = pytest.mark.timeout(300)

PUSH_ACCOUNT = "push@proj.iam.gserviceaccount.com"
TASKS_ACCOUNT = "tasks@proj.iam.gserviceaccount.com"
Configure = Callable[[dict[str, str]], None]


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Configure]:
    """gcp mode on a machine without Google credentials; each target reads its settings on
    its first request after a call."""
    without_google_credentials(monkeypatch, tmp_path / "home")

    def apply(env: dict[str, str]) -> None:
        for name, value in {"HOOKYARD_ENV": "gcp", **env}.items():
            monkeypatch.setenv(name, value)
        rebuild_targets()

    try:
        yield apply
    finally:
        rebuild_targets()


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "X-Google-Status" not in response.headers
    problem = response.json()
    assert problem["status"] == 503
    assert problem["title"] == "Service Unavailable"


def test_webhook_without_credentials_answers_503_and_recovers(
    configure: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Pub/Sub client cannot be built: a problem the sender retries. Once Pub/Sub is
    reachable, the same process accepts the retry."""
    configure({"HOOKYARD_SECRETS": "env"})
    body = stripe_event("evt_nocreds", "payment_intent.succeeded", "acct_1")
    with (
        serving(target_app("webhook", main.webhook)) as url,
        httpx.Client(base_url=url, timeout=60) as client,
        fake_publisher() as pubsub,
    ):
        refused = client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))
        _assert_unavailable(refused)
        assert refused.json()["detail"] == "the event could not be queued; retry later"
        assert pubsub.calls == 0

        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub.address)
        try:
            accepted = client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))
        finally:
            if (built := get_publisher()._client.built) is not None:  # type: ignore[attr-defined]
                built.transport.close()
        assert accepted.status_code == 202, accepted.text
        [message] = pubsub.published()
    assert message.data == body
    assert message.attributes["event_id"] == "evt_nocreds"


def test_secret_store_without_credentials_is_503_at_webhook_and_admin(
    configure: Configure,
) -> None:
    """Secret Manager cannot be asked: neither a crash nor a 401 (which would tell a sender
    its signature is wrong, and an operator that the token is)."""
    configure({"HOOKYARD_SECRETS": "secret-manager"})
    body = stripe_event("evt_nostore", "payment_intent.succeeded", "acct_1")
    with (
        serving(target_app("webhook", main.webhook)) as webhook_url,
        serving(target_app("admin", main.admin)) as admin_url,
        httpx.Client(timeout=60) as client,
    ):
        hook = client.post(
            f"{webhook_url}/webhooks/stripe", content=body, headers=signed_stripe(body)
        )
        ops = client.get(
            f"{admin_url}/admin/stats", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
    _assert_unavailable(hook)
    _assert_unavailable(ops)
    for response in (hook, ops):
        assert response.json()["detail"] == "a secret could not be read; retry later"


def test_worker_without_credentials_acks_and_the_sweeper_relays_later(
    configure: Configure, engine: Engine, tmp_path: Path
) -> None:
    """The ledger commits, then the relay cannot reach Cloud Tasks (no credentials). The push
    is acknowledged anyway (a redelivery would find the event applied and announce nothing);
    the `outbox-relay` job later enqueues the row where the queue works."""
    set_engine(engine)
    with engine.begin() as conn:
        accounts.create(conn, "acct_n", "usd", "https://receiver.example/hook")
    body = stripe_event("evt_relay", "payment_intent.succeeded", "acct_n", amount_received=700)
    try:
        with (
            fake_google(tmp_path / "google") as google,
            serving(target_app("worker", main.worker)) as url,
            httpx.Client(base_url=url, timeout=60) as client,
        ):
            configure({
                "HOOKYARD_SECRETS": "env", "HOOKYARD_WORKER_URL": url,
                "HOOKYARD_OIDC_CERTS_URL": google.certs_url,
                "HOOKYARD_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT,
                "HOOKYARD_TASKS_SERVICE_ACCOUNT": TASKS_ACCOUNT,
            })  # fmt: skip
            envelope = build_envelope(
                project="local-project", subscription="ledger", message_id="m-1", data=body,
                attributes={"source": "stripe", "event_id": "evt_relay",
                            "event_type": "payment_intent.succeeded"},
                publish_time=datetime.now(UTC), delivery_attempt=1,
            )  # fmt: skip
            token = google.token(url, PUSH_ACCOUNT)
            pushed = client.post(
                "/pubsub/ledger", json=envelope, headers={"Authorization": f"Bearer {token}"}
            )
        assert pushed.status_code == 204, pushed.text
    finally:
        set_engine(None)
    with engine.connect() as conn:
        assert accounts.get(conn, "acct_n").available == 700  # type: ignore[union-attr]
        [(outbox_id, enqueued_at)] = conn.execute(
            sa.text("SELECT id, enqueued_at FROM outbox")
        ).all()
    assert enqueued_at is None  # the relay after commit could not enqueue it

    with engine.begin() as conn:  # the sweeper takes rows older than a minute
        conn.execute(sa.text("UPDATE outbox SET created_at = now() - interval '5 minutes'"))
    with fake_cloud_tasks() as tasks:
        channel = grpc.insecure_channel(tasks.address)
        client_ = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
        try:
            queue = CloudTasksQueue(
                "local-project", "us-central1", worker_url=url,
                service_account=TASKS_ACCOUNT, timeout_s=60, client=client_,
            )  # fmt: skip
            runner = JobRunner(engine, get_topology(), queue, OutboxRelay(engine, queue))
            runner(job_task("outbox-relay", datetime.now(UTC)).body)
        finally:
            client_.transport.close()
    [request] = tasks.requests
    parent = "projects/local-project/locations/us-central1/queues/notifications"
    assert request.parent == parent
    assert request.task.name == f"{parent}/tasks/outbox-{outbox_id}"
    http = request.task.http_request
    assert http.url == f"{url}/tasks/notifications"
    assert json.loads(http.body) == {"outbox_id": outbox_id}
    assert http.oidc_token.service_account_email == TASKS_ACCOUNT
    assert http.oidc_token.audience == url
    with engine.connect() as conn:
        marked = conn.execute(sa.text("SELECT enqueued_at FROM outbox")).scalar_one()
    assert marked is not None


def test_unreadable_database_password_is_503_at_admin(
    configure: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Cloud SQL the password is read when a connection opens, inside the request: a
    store failure there is a 503 problem, and building the engine touches neither the store
    nor credentials."""
    monkeypatch.delenv("HOOKYARD_DATABASE_URL", raising=False)
    configure({
        "HOOKYARD_SECRETS": "secret-manager",
        "HOOKYARD_CLOUD_SQL_INSTANCE": "proj:europe-west1:ledger",
    })  # fmt: skip
    tokens = EnvSecretStore({env_var_for("admin-token"): ADMIN_TOKEN})
    operators = Admin(get_engine, tokens, "local-project")
    set_engine(None)
    try:
        with (
            serving(target_app("admin", operators.handle)) as url,
            httpx.Client(base_url=url, timeout=60) as client,
        ):
            response = client.get(
                "/admin/accounts/acct_1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
        _assert_unavailable(response)
        assert response.json()["detail"] == "a secret could not be read; retry later"
        engine = get_engine()  # built without reading the password
        try:
            with pytest.raises(SecretUnavailable, match="db-password"), engine.connect():
                pass
        finally:
            engine.dispose()
    finally:
        set_engine(None)


def test_unreadable_signing_key_is_a_retry_and_nothing_is_sent(
    configure: Configure, engine: Engine, tmp_path: Path
) -> None:
    """The notification task cannot read `notify-signing-key`: the queue is asked to retry
    (500: Cloud Tasks throttles a whole queue on 503), nothing unsigned leaves, and no
    attempt is counted against the row."""
    set_engine(engine)
    with engine.begin() as conn:
        accounts.create(conn, "acct_k", "usd", "https://receiver.example/hook")
        outbox_id = outbox.add(conn, "acct_k", "balance.updated", {"account_id": "acct_k"})
    try:
        with (
            fake_google(tmp_path / "google") as google,
            serving(target_app("worker", main.worker)) as url,
            httpx.Client(base_url=url, timeout=60) as client,
        ):
            configure({
                "HOOKYARD_SECRETS": "secret-manager", "HOOKYARD_WORKER_URL": url,
                "HOOKYARD_OIDC_CERTS_URL": google.certs_url,
                "HOOKYARD_TASKS_SERVICE_ACCOUNT": TASKS_ACCOUNT,
            })  # fmt: skip
            response = client.post(
                "/tasks/notifications", json={"outbox_id": outbox_id},
                headers={"Authorization": f"Bearer {google.token(url, TASKS_ACCOUNT)}",
                         "X-CloudTasks-TaskRetryCount": "0"},
            )  # fmt: skip
    finally:
        set_engine(None)
    assert response.status_code == 500, response.text
    assert response.json()["type"] == "https://hookyard.dev/problems/retry-later"
    with engine.connect() as conn:
        row = outbox.get(conn, outbox_id)
        tried = conn.execute(sa.text("SELECT count(*) FROM notification_attempts")).scalar_one()
    assert row is not None
    assert (row.state, row.attempts, tried) == ("pending", 0, 0)
