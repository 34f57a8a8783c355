"""The local stack is not open to anyone on the machine or to any web page.

`/pubsub`, `/tasks`, `/cron` and the emulator APIs accept only a token the stack itself
issued, for the caller of that surface, verified against the certificate it publishes; a
browser's cross-site request is refused even when it carries a valid token. Each forged
call is checked for having had no effect, and the same call with the right token for
having had one, so a refusal cannot be mistaken for some other failure.
"""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from common.db import outbox
from common.envelope import build_envelope
from common.oidc import TokenMinter
from common.service_identity import (
    LOCAL_CALLERS,
    LOCAL_CERTS_PATH,
    SIGNING_KEY_FILE,
    Surface,
    load_local_signer,
    local_issuer,
)
from hookyard.local_identity import LocalIdentity
from hookyard.stack import LocalStack
from tests.support.postgres import TestServer
from tests.support.receiver import Receiver, receiver
from tests.support.stack import (
    TEST_SECRETS,
    admin,
    module_stack,
    running_stack,
    service_headers,
    service_token,
    stripe_event,
)

PROJECT, LOCATION = "local-project", "us-central1"
FOREIGN = {"Origin": "http://evil.example", "Content-Type": "text/plain"}


@pytest.fixture(scope="module")
def live(pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with module_stack(pg_server, tmp_path_factory.mktemp("auth")) as running:
        yield running


@pytest.fixture(scope="module")
def db(live: LocalStack) -> Engine:
    assert live.engine is not None
    return live.engine


@pytest.fixture(scope="module")
def hook() -> Iterator[Receiver]:
    with receiver() as running:
        yield running


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _stack_minter(
    live: LocalStack, *, issuer: str | None = None, at: float | None = None
) -> TokenMinter:
    """The stack's own key, with another issuer or another clock than the stack's."""
    signer, _ = load_local_signer(live.secrets_dir)
    clock = (lambda: at) if at is not None else time.time
    return TokenMinter(signer, issuer or local_issuer(live.url), clock=clock)


def _forgeries(live: LocalStack, surface: Surface, tmp_path: Path) -> dict[str, dict[str, str]]:
    """Every way a caller without the surface's own token might try, by name."""
    email = LOCAL_CALLERS[surface]
    other_key = LocalIdentity(tmp_path / "other-key", live.url)
    wrong_caller: Surface = "cron" if surface != "cron" else "pubsub"
    return {
        "no token": {},
        "text/plain from a foreign origin": dict(FOREIGN),
        "not a JWT": _bearer("not-a-token"),
        "another surface's caller": _bearer(service_token(live, wrong_caller)),
        "another key": _bearer(other_key.minter.token(email, live.url)),
        "expired": _bearer(_stack_minter(live, at=time.time() - 7200).token(email, live.url)),
        "another audience": _bearer(_stack_minter(live).token(email, "http://127.0.0.1:1")),
        "another issuer": _bearer(
            _stack_minter(live, issuer="http://evil.example/emulator/oauth2").token(email, live.url)
        ),
    }


def _assert_refused(response: httpx.Response, case: str) -> None:
    expected = 403 if "Origin" in response.request.headers else 401
    assert response.status_code == expected, (case, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), case
    authorization = response.request.headers.get("Authorization", "")
    assert not authorization or authorization.split()[-1] not in response.text, case


def _balance(client: httpx.Client, account: str) -> int:
    return int(client.get(f"/admin/accounts/{account}").json()["available"])


def test_a_hand_made_push_credits_nothing(live: LocalStack, db: Engine, tmp_path: Path) -> None:
    """The issue's reproduction: an envelope nobody published, posted to /pubsub/ledger."""
    body = stripe_event("evt_forged", "payment_intent.succeeded", "acct_f", amount_received=10**6)
    envelope = build_envelope(
        project=PROJECT, subscription="ledger", message_id="forged-1", data=body,
        attributes={"source": "stripe", "event_id": "evt_forged",
                    "event_type": "payment_intent.succeeded"},
        publish_time=datetime.now(UTC), delivery_attempt=1,
    )  # fmt: skip
    raw = json.dumps(envelope).encode()
    with (
        httpx.Client(base_url=live.url, timeout=60) as client,
        admin(httpx.Client(base_url=live.url, timeout=60)) as operator,
    ):
        operator.put("/admin/accounts/acct_f", json={"currency": "usd"})
        for case, headers in _forgeries(live, "pubsub", tmp_path).items():
            headers.setdefault("Content-Type", "application/json")
            _assert_refused(client.post("/pubsub/ledger", content=raw, headers=headers), case)
        with db.connect() as conn:
            seen = sa.text("SELECT count(*) FROM inbox WHERE event_id = 'evt_forged'")
            assert conn.execute(seen).scalar_one() == 0
        assert _balance(operator, "acct_f") == 0
        pushed = client.post(
            "/pubsub/ledger", json=envelope, headers=service_headers(live, "pubsub")
        )
        assert pushed.status_code == 204, pushed.text
        assert _balance(operator, "acct_f") == 10**6


def test_a_hand_made_task_notifies_nobody(
    live: LocalStack, db: Engine, hook: Receiver, tmp_path: Path
) -> None:
    with (
        httpx.Client(base_url=live.url, timeout=60) as client,
        admin(httpx.Client(base_url=live.url, timeout=60)) as operator,
    ):
        assert live.tasks is not None
        live.tasks.pause("notifications")  # only the hand-made calls below may deliver
        try:
            created = operator.put(
                "/admin/accounts/acct_t", json={"currency": "usd", "notify_url": hook.url}
            )
            assert created.status_code == 201, created.text
            with db.begin() as conn:
                row_id = outbox.add(conn, "acct_t", "balance.updated", {"type": "balance.updated"})
            body = json.dumps({"outbox_id": row_id}).encode()
            attempt = {
                "X-CloudTasks-TaskName": f"outbox-{row_id}",
                "X-CloudTasks-TaskRetryCount": "0",
            }
            for case, forged in _forgeries(live, "tasks", tmp_path).items():
                headers = {"Content-Type": "application/json", **attempt, **forged}
                response = client.post("/tasks/notifications", content=body, headers=headers)
                _assert_refused(response, case)
            assert hook.received == []
            headers = {
                "Content-Type": "application/json",
                **attempt,
                **service_headers(live, "tasks"),
            }
            sent = client.post("/tasks/notifications", content=body, headers=headers)
            assert sent.status_code == 204, sent.text
            assert len(hook.received) == 1
        finally:
            live.tasks.resume("notifications")


def test_a_hand_made_cron_tick_schedules_nothing(
    live: LocalStack, db: Engine, tmp_path: Path
) -> None:
    tick = {"X-CloudScheduler": "true", "X-CloudScheduler-ScheduleTime": "2031-01-01T00:00:00Z"}
    with httpx.Client(base_url=live.url, timeout=60) as client:
        for case, headers in _forgeries(live, "cron", tmp_path).items():
            _assert_refused(client.post("/cron/reconcile", headers={**tick, **headers}), case)
        query = sa.text("SELECT count(*) FROM emulator.tasks WHERE name = :n")
        name = {"n": "reconcile-20310101T000000Z"}
        with db.connect() as conn:
            assert conn.execute(query, name).scalar_one() == 0
        scheduled = client.post(
            "/cron/reconcile", headers={**tick, **service_headers(live, "cron")}
        )
        assert scheduled.status_code == 202, scheduled.text
        with db.connect() as conn:
            assert conn.execute(query, name).scalar_one() == 1


SURFACES: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("pubsub", "POST", "/pubsub/ledger", {}),
    ("tasks", "POST", "/tasks/statements", {}),
    ("cron", "POST", "/cron/reconcile", None),
    # Anonymous, as Google's emulators are, but never from a web page.
    (
        "cloud-tasks-api",
        "POST",
        f"/v2/projects/{PROJECT}/locations/{LOCATION}/queues/jobs:resume",
        {},
    ),
    ("admin", "GET", "/admin/dead-letters", None),
]


@pytest.mark.parametrize(("surface", "method", "path", "body"), SURFACES)
def test_a_valid_token_from_a_web_page_is_still_refused(
    live: LocalStack, surface: str, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """A page cannot read the token, but a request it makes must not get in even with one
    (a browser that holds credentials for the stack, a token leaked into a page)."""
    if surface == "admin":
        auth = _bearer(TEST_SECRETS["HOOKYARD_SECRET_ADMIN_TOKEN"])
    elif surface == "cloud-tasks-api":
        auth = {}
    else:
        auth = service_headers(live, surface)  # type: ignore[arg-type]
    with httpx.Client(base_url=live.url, timeout=60, headers=auth) as client:
        browsers = [
            {"Origin": "http://evil.example"}, {"Origin": "null"},
            {"Origin": live.url.replace("127.0.0.1", "localhost")},
            {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
        ]  # fmt: skip
        for browser in browsers:
            response = client.request(method, path, json=body, headers=browser)
            assert response.status_code == 403, (browser, response.text)
        same_origin = {"Origin": live.url, "Sec-Fetch-Site": "same-origin"}
        response = client.request(method, path, json=body, headers=same_origin)
        assert response.status_code not in (401, 403, 415), response.text
        if method == "POST":
            plain = client.post(path, content=b"{}", headers={"Content-Type": "text/plain"})
            assert plain.status_code == 415, plain.text


def test_the_issuer_publishes_certificates_and_keeps_its_key_private(
    pg_server: TestServer, database: str, tmp_path: Path
) -> None:
    with running_stack(pg_server, database, tmp_path) as stack:
        response = httpx.get(stack.url + LOCAL_CERTS_PATH, timeout=60)
        assert response.status_code == 200
        assert "max-age=" in response.headers["Cache-Control"]
        first = response.json()
        assert len(first) == 1
        assert all(pem.startswith("-----BEGIN CERTIFICATE-----") for pem in first.values())
        assert "PRIVATE" not in response.text
    key = tmp_path / "data" / "secrets" / SIGNING_KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with running_stack(pg_server, database, tmp_path) as stack:
        again = httpx.get(stack.url + LOCAL_CERTS_PATH, timeout=60).json()
    assert again == first  # the key outlives a restart, as the other generated secrets do
    with running_stack(pg_server, database, tmp_path / "elsewhere") as stack:
        other = httpx.get(stack.url + LOCAL_CERTS_PATH, timeout=60).json()
    assert set(other).isdisjoint(first)  # a fresh data directory, a fresh key
