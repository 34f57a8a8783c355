"""Every surface meets hostile input with a 4xx problem, never a 5xx or a hang, and loses
nothing it had accepted. Each case is a reproduction from issue #11, over a real socket."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.config import Settings
from common.service_identity import Surface
from hookyard.stack import LocalStack
from tests.support.postgres import TestServer
from tests.support.stack import (
    ADMIN_TOKEN,
    admin,
    service_headers,
    signed_stripe,
    stripe_event,
    wait_for,
)

PROBLEM = "application/problem+json"
DEEP = b"[" * 2000 + b"]" * 2000  # 4 KB, far past the parser's recursion limit
HUGE_INT = "9" * 5000


@pytest.fixture
def client(stack: LocalStack) -> Iterator[httpx.Client]:
    with admin(httpx.Client(base_url=stack.url, timeout=60)) as c:
        yield c


def svc(stack: LocalStack, surface: Surface) -> dict[str, str]:
    """What the stack's own caller of a service surface presents: its token, and JSON."""
    return {"Content-Type": "application/json", **service_headers(stack, surface)}


def assert_problem(response: httpx.Response, status: int, fragment: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert fragment in body["detail"], body
    return body


def envelope(data: bytes, attributes: dict[str, str], **extra: Any) -> bytes:
    message = {
        "data": base64.b64encode(data).decode(),
        "messageId": "m-1",
        "attributes": attributes,
    }
    return json.dumps(
        {"message": message, "subscription": "projects/local-project/subscriptions/ledger", **extra}
    ).encode()


def raw_exchange(stack: LocalStack, request: bytes, timeout: float = 60) -> bytes:
    """Sends bytes as they are and reads until the server closes the connection."""
    assert stack.server is not None
    with socket.create_connection(("127.0.0.1", stack.server.server_port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def create_account(client: httpx.Client, account: str = "acct_1") -> None:
    response = client.put(f"/admin/accounts/{account}", json={"currency": "usd"})
    assert response.status_code in (200, 201), response.text


def available(client: httpx.Client, account: str = "acct_1") -> int:
    return int(client.get(f"/admin/accounts/{account}").json()["available"])


# -- webhooks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "obj"),
    [
        ("/data/object/metadata/account_id", {"metadata": {"account_id": "acct_\ud800"}}),
        ("/data/object/metadata/account_id", {"metadata": {"account_id": "acct_\x00"}}),
        ("/data/object/id", {"id": "ch_\udc00", "metadata": {"account_id": "acct_1"}}),
    ],
    ids=["surrogate-account", "nul-account", "surrogate-charge"],
)
def test_webhook_refuses_what_postgres_cannot_store_naming_the_field(
    client: httpx.Client, where: str, obj: dict[str, Any]
) -> None:
    body = json.dumps(
        {"id": "evt_poison", "type": "charge.refunded", "data": {"object": obj}}
    ).encode()
    problem = assert_problem(
        client.post("/webhooks/stripe", content=body, headers=signed_stripe(body)), 400, where
    )
    assert problem["field"] == f"JSON field {where}"


def test_webhook_refuses_deep_json(client: httpx.Client) -> None:
    assert_problem(
        client.post("/webhooks/stripe", content=DEEP, headers=signed_stripe(DEEP)), 400, "deeper"
    )


def test_an_invalid_chunk_size_line_is_a_400_not_a_500(stack: LocalStack) -> None:
    head = (
        b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    reply = raw_exchange(stack, head + b"zz-not-hex\r\n{}\r\n0\r\n\r\n")
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 400"), reply[:300]
    assert b"application/problem+json" in rest


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET /health/live HTTP/1.1\r\n" + b"X-H: v\r\n" * 200 + b"\r\n", 431),
        (b"NOT A REQUEST LINE\r\n\r\n", 400),
    ],
    ids=["request-line-too-long", "header-too-long", "too-many-headers", "garbled"],
)
def test_errors_the_http_layer_answers_itself_are_problem_json(
    stack: LocalStack, request_bytes: bytes, status: int
) -> None:
    reply = raw_exchange(stack, request_bytes)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status}".encode()) or head.startswith(
        f"HTTP/1.0 {status}".encode()
    ), head[:200]
    assert b"application/problem+json" in head
    assert json.loads(body)["status"] == status


# -- push ------------------------------------------------------------------------------


def test_push_refuses_deep_json_and_absurd_delivery_attempts(
    stack: LocalStack, client: httpx.Client
) -> None:
    headers = svc(stack, "pubsub")
    assert_problem(client.post("/pubsub/ledger", content=DEEP, headers=headers), 400, "deeper")
    body = envelope(b"{}", {"source": "stripe", "event_id": "e"}, deliveryAttempt=10**30)
    assert_problem(client.post("/pubsub/ledger", content=body, headers=headers), 400)


@pytest.mark.parametrize(
    "attributes",
    [
        {"source": "stripe", "event_id": "evt_\ud800"},
        {"source": "stripe", "event_id": "evt_ok", "event_type": "x\x00"},
        {"source": "stripe", "event_id": "evt_ok2", "k\udfff": "v"},
    ],
    ids=["surrogate-event-id", "nul-type", "surrogate-key"],
)
def test_a_pushed_message_postgres_cannot_store_is_dead_lettered_once(
    stack: LocalStack, client: httpx.Client, attributes: dict[str, str]
) -> None:
    create_account(client)
    data = stripe_event("evt_x", "payment_intent.succeeded", "acct_1", amount_received=5)
    response = client.post(
        "/pubsub/ledger", content=envelope(data, attributes), headers=svc(stack, "pubsub")
    )
    assert response.status_code == 204, response.text
    [dead] = client.get("/admin/dead-letters").json()["items"]
    assert dead["error_class"] == "PermanentError"
    assert "attribute" in dead["reason"]
    assert available(client) == 0
    shown = client.get(f"/admin/dead-letters/{dead['id']}").json()
    assert shown["data"].encode() == data


@pytest.mark.parametrize(
    "obj",
    [
        {"metadata": {"account_id": "acct_\ud800"}, "amount_received": 1, "currency": "usd"},
        {"metadata": {"account_id": "acct_1"}, "amount_received": 2**64, "currency": "usd"},
    ],
    ids=["surrogate-account", "amount-beyond-bigint"],
)
def test_a_poison_event_is_dead_lettered_and_the_next_one_still_applies(
    stack: LocalStack, client: httpx.Client, obj: dict[str, Any]
) -> None:
    """Before the fix the poison left its connection out of step with the server, and the
    next event on it could commit its inbox row without its ledger effect."""
    create_account(client)
    headers = svc(stack, "pubsub")
    poison = json.dumps(
        {"id": "evt_p", "type": "payment_intent.succeeded", "data": {"object": obj}}
    ).encode()
    response = client.post(
        "/pubsub/ledger",
        content=envelope(poison, {"source": "stripe", "event_id": "evt_p"}),
        headers=headers,
    )
    assert response.status_code == 204, response.text
    for n in range(20):
        good = stripe_event(f"evt_g{n}", "payment_intent.succeeded", "acct_1", amount_received=10)
        message = json.loads(envelope(good, {"source": "stripe", "event_id": f"evt_g{n}"}))
        message["message"]["messageId"] = f"m-g{n}"
        ok = client.post("/pubsub/ledger", content=json.dumps(message), headers=headers)
        assert ok.status_code == 204, ok.text
    assert available(client) == 200
    [dead] = client.get("/admin/dead-letters").json()["items"]
    assert dead["event_id"] == "evt_p"
    assert dead["error_class"] == "PermanentError"


# -- admin -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"/admin/dead-letters?limit={HUGE_INT}",
        f"/admin/dead-letters?cursor={HUGE_INT}",
        f"/admin/dead-letters/{HUGE_INT}",
        f"/admin/replays/{HUGE_INT}",
        f"/admin/events?cursor={HUGE_INT}",
        "/admin/dead-letters?since=0001-01-01T00:00:00%2B01:00",
        "/admin/dead-letters?until=9999-12-31T23:59:59-01:00",
    ],
    ids=["limit", "cursor", "id", "replay", "events-cursor", "since", "until"],
)
def test_admin_refuses_out_of_range_input_and_stays_healthy(
    client: httpx.Client, path: str
) -> None:
    assert_problem(client.get(path), 400)
    for _ in range(5):  # the pool's connections all still answer correctly
        assert client.get("/admin/dead-letters").json() == {"items": [], "next_cursor": None}


def test_admin_replay_filter_with_out_of_range_time_is_400(client: httpx.Client) -> None:
    body = {"filter": {"since": "0001-01-01T00:00:00+01:00"}, "reason": "x", "dry_run": True}
    assert_problem(client.post("/admin/dead-letters/replay", json=body), 400, "since")


# -- tasks, cron, emulator ---------------------------------------------------------------


def test_task_retry_count_with_thousands_of_digits_is_400(
    stack: LocalStack, client: httpx.Client
) -> None:
    headers = {
        **svc(stack, "tasks"),
        "X-CloudTasks-TaskRetryCount": HUGE_INT,
        "X-CloudTasks-TaskName": "t",
    }
    assert_problem(client.post("/tasks/jobs", content=b"{}", headers=headers), 400)


@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00Z"]
)
def test_cron_schedule_time_out_of_range_is_400(
    stack: LocalStack, client: httpx.Client, when: str
) -> None:
    headers = {**svc(stack, "cron"), "X-CloudScheduler-ScheduleTime": when}
    problem = assert_problem(client.post("/cron/reconcile", headers=headers), 400)
    assert problem["field"] == "X-CloudScheduler-ScheduleTime"


def test_the_tasks_api_refuses_what_google_refuses(stack: LocalStack, client: httpx.Client) -> None:
    """Pub/Sub's gRPC API meets the same kinds in tests/integration/test_broker_grpc.py."""
    tasks = "/v2/projects/local-project/locations/us-central1/queues/jobs/tasks"
    parent = "projects/local-project/locations/us-central1/queues/jobs"
    url = f"{stack.url}/tasks/jobs"
    nul_name = {"task": {"name": f"{parent}/tasks/a\u0000b", "httpRequest": {"url": url}}}
    refused = client.post(tasks, json=nul_name)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["status"] == "INVALID_ARGUMENT"
    surrogate = b'{"task": {"httpRequest": {"url": "http://x/", "headers": {"k": "v\\ud800"}}}}'
    json_type = {"Content-Type": "application/json"}
    assert client.post(tasks, content=surrogate, headers=json_type).status_code == 400
    assert client.post(tasks, content=DEEP, headers=json_type).status_code == 400


# -- body limits, timeouts and the connection cap -------------------------------------------


def chunks(total: int) -> Iterator[bytes]:
    for _ in range(total // 65536):
        yield b" " * 65536


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/pubsub/ledger", 14 * 1024 * 1024),
        ("/tasks/jobs", 1024 * 1024),
        ("/cron/reconcile", 64 * 1024),
        ("/admin/dead-letters/discard", 1024 * 1024),
        ("/v2/projects/local-project/locations/us-central1/queues/jobs/tasks", 512 * 1024),
    ],
)  # fmt: skip
def test_every_surface_has_a_body_limit(
    stack: LocalStack, client: httpx.Client, path: str, limit: int
) -> None:
    surface: Surface | None = next(
        (s for s in ("pubsub", "tasks", "cron") if path.startswith(f"/{s}/")), None
    )
    headers = {
        "Content-Type": "application/json",
        "X-CloudTasks-TaskName": "t",
        "Authorization": f"Bearer {ADMIN_TOKEN}",
        **(service_headers(stack, surface) if surface else {}),
    }
    over = client.post(path, content=chunks(limit + 2 * 65536), headers=headers)
    assert over.status_code == 413, over.text[:300]
    assert "limit" in over.text
    # Refused from Content-Length alone: the body is never sent.
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    declared = raw_exchange(
        stack,
        f"POST {path} HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {limit + 1}\r\n\r\n".encode(),
    )
    assert declared.startswith(b"HTTP/1.1 413"), declared[:200]


@pytest.fixture
def tight_stack(pg_server: TestServer, database: str, tmp_path: Path) -> Iterator[LocalStack]:
    """Small read timeout and connection cap, so the test needs few sockets and no long wait."""
    settings = Settings(
        database_url=pg_server.url_for(database),
        port=0,
        pubsub_port=0,
        data_dir=tmp_path / "data",
        http_read_timeout_s=1.0,
        http_max_connections=8,
        scheduler_enabled=False,
    )
    stack = LocalStack(settings)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def test_a_body_shorter_than_its_content_length_does_not_hold_a_thread(
    tight_stack: LocalStack,
) -> None:
    head = (
        b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    reply = raw_exchange(tight_stack, head + b'{"short":')
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"application/problem+json" in reply


def test_the_connection_cap_refuses_the_excess_and_recovers(tight_stack: LocalStack) -> None:
    assert tight_stack.server is not None
    address = ("127.0.0.1", tight_stack.server.server_port)
    idle = [socket.create_connection(address, timeout=60) for _ in range(8)]
    try:
        extra = socket.create_connection(address, timeout=60)
        with extra:
            extra.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b""
            while chunk := extra.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 503"), reply[:200]
        assert b"application/problem+json" in reply
    finally:
        for s in idle:
            s.close()

    def live() -> bool:
        try:
            return httpx.get(f"{tight_stack.url}/health/live", timeout=60).status_code == 200
        except httpx.HTTPError:
            return False

    assert wait_for(live, timeout=120)


def test_idle_keep_alive_connections_are_closed_after_the_timeout(
    tight_stack: LocalStack,
) -> None:
    assert tight_stack.server is not None
    with socket.create_connection(("127.0.0.1", tight_stack.server.server_port), timeout=60) as s:
        assert s.recv(1) == b""  # the server closed it; the bound above only stops a hang
