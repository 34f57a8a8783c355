"""The functions-framework `worker` target in main.py, served over a real socket, in local
and in gcp mode: the same verifier, fed by the local issuer or by Google-style certificates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import main
from common.db import accounts
from common.db.engine import set_engine
from common.envelope import build_envelope
from hookyard.local_identity import LocalIdentity
from hookyard.server import create_app
from tests.support.oidc import fake_google
from tests.support.stack import stripe_event
from tests.support.wsgi import rebuild_targets, serving, target_app

PUSH_ACCOUNT = "push@proj.iam.gserviceaccount.com"
TASKS_ACCOUNT = "tasks@proj.iam.gserviceaccount.com"
Configure = Callable[[dict[str, str]], None]


@pytest.fixture
def worker(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Configure]]:
    """The worker's URL, and how to set its environment (read on its first request)."""
    set_engine(engine)
    app = target_app("worker", main.worker)

    def configure(env: dict[str, str]) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        rebuild_targets()

    try:
        with serving(app) as url:
            yield url, configure
    finally:
        rebuild_targets()
        set_engine(None)


def _forged_push(account: str, amount: int) -> dict[str, object]:
    body = stripe_event("evt_forged", "payment_intent.succeeded", account, amount_received=amount)
    return build_envelope(
        project="local-project", subscription="ledger", message_id="forged-1", data=body,
        attributes={"source": "stripe", "event_id": "evt_forged",
                    "event_type": "payment_intent.succeeded"},
        publish_time=datetime.now(UTC), delivery_attempt=1,
    )  # fmt: skip


def test_worker_target_serves_push_tasks_and_health(
    worker: tuple[str, Configure], tmp_path: Path
) -> None:
    """Local mode: tokens from the local issuer, whose certificates the worker fetches."""
    url, configure = worker
    mounts: dict[str, object] = {}
    with serving(create_app(mounts)) as stack_url:  # type: ignore[arg-type]
        identity = LocalIdentity(tmp_path / "secrets", stack_url)
        mounts["emulator"] = identity.handle_certs
        configure({"HOOKYARD_EMULATOR_URL": stack_url})
        push = {"Authorization": f"Bearer {identity.token('pubsub')}"}
        task = {"Authorization": f"Bearer {identity.token('tasks')}"}
        with httpx.Client(base_url=url, timeout=60) as client:
            assert client.get("/health/ready").status_code == 200
            assert client.post("/pubsub/ledger", content=b"{}").status_code == 401
            assert client.post("/pubsub/ledger", content=b"{}", headers=task).status_code == 401
            bad_push = client.post(
                "/pubsub/ledger", content=b"{}",
                headers={**push, "Content-Type": "application/json"},
            )  # fmt: skip
            assert bad_push.status_code == 400
            assert bad_push.json()["detail"] == "push body has no message object"
            missing_task = client.post(
                "/tasks/notifications", json={"outbox_id": 10**9},
                headers={**task, "X-CloudTasks-TaskRetryCount": "0"},
            )  # fmt: skip
            assert missing_task.status_code == 204  # permanent: dead-lettered, then acknowledged
            assert client.post("/tasks/notifications", json={}).status_code == 401
            assert client.post("/tasks/nope", json={}, headers=task).status_code == 404
            assert client.get("/elsewhere").status_code == 404


def test_gcp_worker_accepts_only_google_tokens_for_its_accounts(
    worker: tuple[str, Configure], engine: Engine, tmp_path: Path
) -> None:
    """A forged envelope credited 1,000,000 in gcp mode; now only the push subscription's
    service account, in a token Google signed for the worker's URL, gets in."""
    url, configure = worker
    with engine.begin() as conn:
        accounts.create(conn, "acct_g", "usd", None)
    envelope = _forged_push("acct_g", 1_000_000)
    with fake_google(tmp_path / "google") as google:
        configure({
            "HOOKYARD_ENV": "gcp", "HOOKYARD_WORKER_URL": url,
            "HOOKYARD_OIDC_CERTS_URL": google.certs_url,
            "HOOKYARD_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT,
            "HOOKYARD_TASKS_SERVICE_ACCOUNT": TASKS_ACCOUNT,
        })  # fmt: skip
        refused = {
            "no token": None,
            "the tasks account": google.token(url, TASKS_ACCOUNT),
            "another audience": google.token(url + "/pubsub/ledger", PUSH_ACCOUNT),
            "expired": google.token(url, PUSH_ACCOUNT, iat=1_000_000_000, exp=1_000_003_600),
            "another issuer": google.token(url, PUSH_ACCOUNT, iss="https://evil.example"),
            "unverified email": google.token(url, PUSH_ACCOUNT, email_verified=False),
        }
        with httpx.Client(base_url=url, timeout=60) as client:
            for case, token in refused.items():
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                response = client.post("/pubsub/ledger", json=envelope, headers=headers)
                assert response.status_code == 401, case
                assert token is None or token not in response.text
            _assert_nothing_applied(engine)
            good = {"Authorization": f"Bearer {google.token(url, PUSH_ACCOUNT)}"}
            assert client.post("/pubsub/ledger", json=envelope, headers=good).status_code == 204
            as_tasks = {"Authorization": f"Bearer {google.token(url, TASKS_ACCOUNT)}"}
            missing = client.post(
                "/tasks/notifications",
                json={"outbox_id": 10**9},
                headers={**as_tasks, "X-CloudTasks-TaskRetryCount": "0"},
            )
            assert missing.status_code == 204
            assert client.post("/tasks/notifications", json={}, headers=good).status_code == 401
        assert google.certs_fetches == 1  # cached, not fetched per request
    with engine.connect() as conn:
        assert accounts.get(conn, "acct_g").available == 1_000_000  # type: ignore[union-attr]


def test_gcp_worker_without_a_service_account_refuses_everything(
    worker: tuple[str, Configure], engine: Engine, tmp_path: Path
) -> None:
    url, configure = worker
    with fake_google(tmp_path / "google") as google:
        configure({"HOOKYARD_ENV": "gcp", "HOOKYARD_WORKER_URL": url,
                   "HOOKYARD_OIDC_CERTS_URL": google.certs_url})  # fmt: skip
        token = google.token(url, PUSH_ACCOUNT)
        with httpx.Client(base_url=url, timeout=60) as client:
            response = client.post(
                "/pubsub/ledger", json=_forged_push("acct_g", 1_000_000),
                headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
    assert response.status_code == 401
    assert response.json()["detail"] == "no caller is configured for this endpoint"
    _assert_nothing_applied(engine)


def _assert_nothing_applied(engine: Engine) -> None:
    with engine.connect() as conn:
        for table in ("inbox", "ledger_transactions", "dead_letters"):
            count = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            assert count == 0, table
