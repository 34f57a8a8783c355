"""Helpers to run the real local stack in-process on a test database, and to sign requests."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.config import Settings
from common.service_identity import Surface, audience_for
from common.topology import Topology, get_topology
from hookyard.stack import LocalStack
from tests.support.postgres import TestServer
from workers.push import EnvelopeHook

STRIPE_SECRET = "whsec_test_stripe_secret_for_hookyard"
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ADMIN_TOKEN = "test-admin-token"

SOURCE_SECRETS = {
    "HOOKYARD_SECRET_WEBHOOK_SECRET_STRIPE": STRIPE_SECRET,
    "HOOKYARD_SECRET_WEBHOOK_SECRET_STANDARD": STANDARD_SECRET,
    "HOOKYARD_SECRET_WEBHOOK_SECRET_GITHUB": "It's a Secret to Everybody",
    "HOOKYARD_SECRET_WEBHOOK_SECRET_SHOPIFY": "shpss_test_client_secret",
    "HOOKYARD_SECRET_WEBHOOK_SECRET_SLACK": "8f742231b10e8888abcd99yyyzzz85a5",
    "HOOKYARD_SECRET_WEBHOOK_SECRET_TWILIO": "12345",
}
TEST_SECRETS = {**SOURCE_SECRETS, "HOOKYARD_SECRET_ADMIN_TOKEN": ADMIN_TOKEN}


def fast_topology(max_delivery_attempts: int = 5) -> Topology:
    """The shipped topology with retry delays shrunk so redelivery tests take a moment."""
    raw = get_topology().model_dump()
    for sub in raw["subscriptions"]:
        sub["retry_policy"] = {"minimum_backoff_s": 0.05, "maximum_backoff_s": 0.2}
        if sub.get("dead_letter_policy"):
            sub["dead_letter_policy"]["max_delivery_attempts"] = max_delivery_attempts
    return Topology.model_validate(raw)


@contextmanager
def running_stack(
    pg_server: TestServer,
    database: str,
    tmp_path: Path,
    *,
    topology: Topology | None = None,
    worker_hook: EnvelopeHook | None = None,
    notify_allow_loopback: bool = True,
    dev_processes: bool = False,
) -> Iterator[LocalStack]:
    """Loopback notify_urls are allowed by default: the tests' receivers listen on 127.0.0.1.
    `dev_processes` runs the four targets as their own processes, as `hookyard dev` does."""
    settings = Settings(
        database_url=pg_server.url_for(database), port=0, pubsub_port=0,
        data_dir=tmp_path / "data", notify_allow_loopback=notify_allow_loopback,
        dev_processes=dev_processes,
    )  # fmt: skip
    stack = LocalStack(settings, topology=topology or get_topology(), worker_hook=worker_hook)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@contextmanager
def module_stack(
    pg_server: TestServer, tmp_path: Path, *, dev_processes: bool = False
) -> Iterator[LocalStack]:
    """One stack for a whole test module, on its own database, with the test secrets set for
    as long as it runs (the per-test autouse secrets fixture does not reach module scope)."""
    database = pg_server.create_database()
    patch = pytest.MonkeyPatch()
    for name, value in TEST_SECRETS.items():
        patch.setenv(name, value)
    try:
        with running_stack(pg_server, database, tmp_path, dev_processes=dev_processes) as stack:
            yield stack
    finally:
        patch.undo()
        pg_server.drop_database(database)


def service_token(stack: LocalStack, surface: Surface) -> str:
    """A token as the stack's own caller of `surface` presents it (the broker for `pubsub`,
    the task emulator for `tasks`, the scheduler for `cron`, its clients for `emulator`)."""
    assert stack.identity is not None, "the stack is not running"
    return stack.identity.token(surface, audience_for(surface, stack.settings, stack.url))


def service_headers(stack: LocalStack, surface: Surface) -> dict[str, str]:
    return {"Authorization": f"Bearer {service_token(stack, surface)}"}


def stripe_event(
    event_id: str, type_: str, account_id: str, currency: str = "usd", **obj: Any
) -> bytes:
    """A Stripe-shaped event, pretty-printed as Stripe sends it."""
    body = {
        "id": event_id,
        "object": "event",
        "type": type_,
        "created": 1_700_000_000,
        "data": {"object": {"currency": currency, "metadata": {"account_id": account_id}, **obj}},
    }
    return json.dumps(body, indent=2).encode()


def signed_stripe(
    body: bytes, secret: str = STRIPE_SECRET, now: int | None = None
) -> dict[str, str]:
    from common.signatures.signing import sign_headers

    headers = sign_headers("stripe", body, secret, now=now or int(time.time()))
    return {**headers, "Content-Type": "application/json"}


def admin(client: httpx.Client) -> httpx.Client:
    client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    return client


def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Polls `predicate` until truthy; the bound only keeps a broken test from hanging, so it
    is generous enough that a busy machine never reaches it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
