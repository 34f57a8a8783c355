"""The production shape, locally: `hookyard dev` runs the webhook, cron, admin and worker
targets as their own gunicorn processes behind one front door, and the emulators, in a
process of their own, push to the worker process as Pub/Sub and Cloud Tasks push to its
Cloud Run URL."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from common.config import Settings
from common.errors import ConfigError
from hookyard.stack import LocalStack
from tests.support.postgres import TestServer
from tests.support.stack import (
    admin,
    module_stack,
    running_stack,
    signed_stripe,
    stripe_event,
    wait_for,
)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def stack(pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with module_stack(pg_server, tmp_path_factory.mktemp("processes"), dev_processes=True) as s:
        yield s


def _pids(stack: LocalStack) -> dict[str, int]:
    assert stack.supervisor is not None
    pids = {}
    for target in stack.supervisor.targets:
        assert target.process is not None
        pids[target.name] = target.process.pid
    return pids


def test_each_target_is_its_own_process_group(stack: LocalStack) -> None:
    pids = _pids(stack)
    assert set(pids) == {"emulators", "webhook", "cron", "admin", "worker"}
    assert len(set(pids.values())) == 5
    for name, pid in pids.items():
        assert pid != os.getpid()
        assert os.getpgid(pid) == pid  # a group of its own, gunicorn workers included
        if name != "emulators":
            assert psutil.Process(pid).children(), "gunicorn serves from a worker process"
    assert stack.broker is None, "the broker runs in the emulators' process, not the front door's"


def test_the_emulators_killed_come_back_on_the_same_address_and_lose_nothing(
    stack: LocalStack,
) -> None:
    assert stack.supervisor is not None
    emulators = stack.supervisor.by_name("emulators")
    assert emulators.process is not None
    old, address = emulators.process.pid, stack.pubsub_emulator_host
    with admin(httpx.Client(base_url=stack.url, timeout=60)) as client:
        assert client.put("/admin/accounts/acct_k", json={"currency": "usd"}).status_code == 201
        os.killpg(old, signal.SIGKILL)
        for n in range(5):
            body = stripe_event(f"evt_kill_{n}", "payment_intent.succeeded", "acct_k",
                                amount_received=100)  # fmt: skip

            def sent(body: bytes = body) -> bool:
                response = client.post(
                    "/webhooks/stripe", content=body, headers=signed_stripe(body)
                )
                assert response.status_code in {202, 503}, response.text
                return response.status_code == 202

            assert wait_for(sent, timeout=120, interval=0.2)
        wait_for(lambda: client.get("/admin/accounts/acct_k").json()["available"] == 500)
    assert emulators.process is not None
    assert emulators.process.pid != old
    assert emulators.restarts >= 1
    port = int(address.rsplit(":", 1)[1])
    listening = psutil.Process(emulators.process.pid).net_connections("tcp")
    assert any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in listening)


def test_a_payment_goes_through_every_process(stack: LocalStack) -> None:
    with admin(httpx.Client(base_url=stack.url, timeout=60)) as client:
        assert client.put("/admin/accounts/acct_p", json={"currency": "usd"}).status_code == 201
        body = stripe_event("evt_proc_1", "payment_intent.succeeded", "acct_p", amount_received=700)
        sent = client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))
        assert sent.status_code == 202, sent.text
        wait_for(lambda: client.get("/admin/accounts/acct_p").json()["available"] == 700)
        again = client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))
        assert again.status_code == 202
        event = wait_for(
            lambda: client.get("/admin/events/stripe/evt_proc_1").json().get("outcome") == "applied"
        )
        assert event
        assert client.get("/admin/accounts/acct_p").json()["available"] == 700


def test_the_front_door_refuses_a_forged_push_and_passes_problems_through(
    stack: LocalStack,
) -> None:
    envelope = {"message": {"data": "e30=", "messageId": "1", "attributes": {}},
                "subscription": "projects/local-project/subscriptions/ledger"}  # fmt: skip
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        forged = client.post("/pubsub/ledger", json=envelope)
        assert forged.status_code == 401
        assert forged.headers["Content-Type"].startswith("application/problem+json")
        huge = client.post(
            "/webhooks/stripe",
            content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
            headers={"Content-Type": "application/json"},
        )
        assert huge.status_code == 413
        assert client.get("/health/ready").json() == {"status": "ready"}
        assert client.get("/nowhere").status_code == 404


def test_the_front_door_forwards_the_path_as_it_came(stack: LocalStack) -> None:
    """Escapes reach the target once: a NUL is the target's 404, not the front door's 500,
    and `%2541` is the text `%41` (an id the admin API refuses), never `A`."""
    with admin(httpx.Client(base_url=stack.url, timeout=60)) as client:
        assert client.put("/admin/accounts/fdA", json={"currency": "usd"}).status_code == 201
        nul = client.get("/admin/accounts/%00")
        assert nul.status_code in (400, 404), nul.text
        assert nul.headers["Content-Type"] == "application/problem+json"
        escaped = client.get("/admin/accounts/fd%2541")
        assert escaped.status_code == 400, escaped.text
        assert client.get("/admin/accounts/fd%41").json()["id"] == "fdA"


def test_a_target_that_dies_is_a_503_then_comes_back(stack: LocalStack) -> None:
    assert stack.supervisor is not None
    webhook = stack.supervisor.by_name("webhook")
    assert webhook.process is not None
    old = webhook.process.pid
    os.killpg(old, signal.SIGKILL)
    body = stripe_event("evt_proc_2", "customer.created", "acct_p")
    with httpx.Client(base_url=stack.url, timeout=60) as client:

        def answered() -> httpx.Response | None:
            response = client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))
            assert response.status_code in {202, 503}, response.text
            if response.status_code == 503:
                assert response.headers["Retry-After"] == "1"
                return None
            return response

        assert wait_for(answered, timeout=120, interval=0.2).status_code == 202
    assert webhook.process is not None
    assert webhook.process.pid != old
    assert webhook.restarts >= 1


def test_stopping_the_stack_leaves_no_target_running(
    pg_server: TestServer, database: str, tmp_path: Path
) -> None:
    with running_stack(pg_server, database, tmp_path, dev_processes=True) as running:
        pids = list(_pids(running).values())
        family = [p.pid for pid in pids for p in psutil.Process(pid).children(recursive=True)]
    for pid in pids + family:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_pubsub_port_in_use_is_refused_with_its_remedy_and_starts_nothing(
    pg_server: TestServer, database: str, tmp_path: Path
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        settings = Settings(
            database_url=pg_server.url_for(database), port=0, pubsub_port=port,
            data_dir=tmp_path / "data", dev_processes=True,
        )  # fmt: skip
        stack = LocalStack(settings)
        with pytest.raises(ConfigError, match=r"port is in use.*HOOKYARD_PUBSUB_PORT"):
            stack.start()
    assert stack.supervisor is None
    assert stack.server is None


def test_the_emulators_serve_cloud_tasks_and_liveness_and_refuse_the_rest(
    stack: LocalStack,
) -> None:
    assert stack.supervisor is not None
    emulators = stack.supervisor.by_name("emulators")
    queues = "/v2/projects/local-project/locations/us-central1/queues"
    with httpx.Client(timeout=60) as client:
        assert client.get(emulators.url + "/health/live").json() == {"status": "ok"}
        direct = client.get(emulators.url + queues)
        assert direct.status_code == 200
        assert {q["name"].rsplit("/", 1)[1] for q in direct.json()["queues"]} >= {"notifications"}
        assert client.get(stack.url + queues).json() == direct.json()  # the front door forwards
        for method, path, status in [
            ("GET", "/health/ready", 404),
            ("POST", "/health/live", 405),
            ("GET", "/nowhere", 404),
        ]:
            refused = client.request(method, emulators.url + path)
            assert refused.status_code == status, (path, refused.text)
            assert refused.headers["Content-Type"].startswith("application/problem+json")
        unknown = client.get(emulators.url + queues + "/%ff")  # Google's error shape, as Google
        assert unknown.status_code == 404
        assert unknown.json()["error"]["status"] == "NOT_FOUND"
