"""`hookyard listen --forward-to` and `hookyard forward` against the real local stack.

`listen` runs as the developer runs it, a process of its own; webhooks are signed as their
senders sign them and go through the stack; the developer's app is a real HTTP server on
127.0.0.1, and verifies what it gets with the `standardwebhooks` library and the key
`listen` printed.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from common.topology import get_topology
from hookyard.cli import app
from hookyard.forwarding import new_signing_secret, webhook_id
from hookyard.sender import sender_request
from hookyard.stack import LocalStack
from tests.support.cli_runner import Runner
from tests.support.listen_process import BOUND_S, Listening, by_event, listening
from tests.support.postgres import TestServer
from tests.support.receiver import receiver
from tests.support.stack import (
    ADMIN_TOKEN,
    SOURCE_SECRETS,
    admin,
    module_stack,
    stripe_event,
    wait_for,
)


@pytest.fixture(scope="module")
def stack(pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with module_stack(pg_server, tmp_path_factory.mktemp("listen")) as running:
        yield running


# -- sending, as the senders do ---------------------------------------------------------------


def send(stack: LocalStack, source: str, body: bytes, *, kind: str | None = None) -> str:
    """Posts `body` signed as SOURCE's sender signs it; returns the event id the stack took."""
    spec = get_topology().source(source)
    assert spec is not None
    secret = SOURCE_SECRETS[f"HOOKYARD_SECRET_WEBHOOK_SECRET_{source.upper()}"]
    url, headers = sender_request(
        spec, body, secret, now=int(time.time()), url=f"{stack.url}/webhooks/{source}",
        event_id=str(uuid.uuid4()), event_type=kind,
    )  # fmt: skip
    response = httpx.post(url, content=body, headers=headers, timeout=60)
    assert response.status_code == 202, response.text
    return str(response.json()["event_id"])


def stripe(stack: LocalStack, tag: str) -> tuple[str, bytes]:
    body = stripe_event(f"evt_{tag}_{uuid.uuid4().hex[:8]}", "payment_intent.succeeded", "acct_x")
    return send(stack, "stripe", body), body


def github_push(stack: LocalStack) -> tuple[str, bytes]:
    body = b'{\n  "ref": "refs/heads/main",\n  "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",\n  "repository": {"full_name": "acme/app"}\n}\n'  # noqa: E501
    return send(stack, "github", body, kind="push"), body


def shopify_order(stack: LocalStack) -> tuple[str, bytes]:
    body = b'{"id":820982911946154508,"email":"jon@example.com","total_price":"25.00","line_items":[{"sku":"IPOD2008","quantity":1}]}'  # noqa: E501
    return send(stack, "shopify", body, kind="orders/create"), body


def logged(stack: LocalStack, source: str, event_id: str) -> bool:
    """The event is in the event log (what `listen` reads)."""
    with admin(httpx.Client(base_url=stack.url, timeout=60)) as client:
        response = client.get(f"/admin/events/{source}/{event_id}")
    return response.status_code == 200


def test_listen_forwards_each_new_event_once_signed_and_stops_on_ctrl_c(
    stack: LocalStack, tmp_path: Path
) -> None:
    before, _ = stripe(stack, "before")
    wait_for(lambda: logged(stack, "stripe", before), timeout=BOUND_S)
    with (
        receiver() as app_server,
        listening(stack, tmp_path, "--forward-to", app_server.url, "--json") as process,
    ):
        secret = process.secret()
        sent = {
            ("stripe", "payment_intent.succeeded"): stripe(stack, "listen"),
            ("github", "push"): github_push(stack),
            ("shopify", "orders/create"): shopify_order(stack),
        }
        process.lines(3)
        # Events are forwarded in log order: once this one is through, so is any repeat.
        last, last_body = stripe(stack, "last")
        sent["stripe", "last"] = (last, last_body)
        lines = process.lines(4)
        wait_for(lambda: len(app_server.received) >= 4, timeout=BOUND_S)

        got = by_event(app_server.received)
        assert before not in got  # it was in the log before `listen` started
        assert set(got) == {event_id for event_id, _ in sent.values()}
        for (source, kind), (event_id, body) in sent.items():
            [request] = got[event_id]
            assert request.body == body
            Webhook(secret).verify(request.body, request.headers, json_parse=False)
            assert request.headers["Webhook-Id"] == webhook_id(source, event_id)
            assert request.headers["Hookyard-Source"] == source
            assert request.headers["Content-Type"] == "application/json"
            if kind != "last":
                assert request.headers["Hookyard-Event-Type"] == kind
        assert len(lines) == 4
        named = {(line["source"], line["event_id"]): line for line in lines}
        for (source, kind), (event_id, _) in sent.items():
            line = named[source, event_id]
            assert (line["status"], line["outcome"]) == (204, "delivered")
            assert line["event_type"] == ("payment_intent.succeeded" if kind == "last" else kind)

        assert process.stop(signal.SIGINT) == 0
        assert "Traceback" not in "".join(process.stderr)
        after, _ = stripe(stack, "after")
        wait_for(lambda: logged(stack, "stripe", after), timeout=BOUND_S)
        assert len(app_server.received) == 4
        assert after not in by_event(app_server.received)


def test_source_filters_and_sigterm_stops_cleanly(stack: LocalStack, tmp_path: Path) -> None:
    with (
        receiver() as app_server,
        listening(stack, tmp_path, "--forward-to", app_server.url, "--source", "stripe") as process,
    ):
        secret = process.secret()
        github_id, _ = github_push(stack)
        wait_for(lambda: logged(stack, "github", github_id), timeout=BOUND_S)
        stripe_id, body = stripe(stack, "only")
        # Not a TTY: JSON lines without --json.
        [line] = process.lines(1)
        assert (line["source"], line["event_id"], line["status"]) == ("stripe", stripe_id, 204)
        [request] = app_server.received
        assert request.body == body
        Webhook(secret).verify(request.body, request.headers, json_parse=False)
        assert process.stop(signal.SIGTERM) == 0
        assert "Traceback" not in "".join(process.stderr)


class FlakyApp:
    """A developer's app on a raw socket that answers as scripted: a status code, or
    "close" to hang up without answering; 204 once the script runs out."""

    def __init__(self, script: list[int | str]) -> None:
        self.script = list(script)
        self.bodies: list[bytes] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/hooks"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(60)
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += conn.recv(65536)
        self.bodies.append(body)
        reply = self.script.pop(0) if self.script else 204
        if reply == "close":
            return
        conn.sendall(
            f"HTTP/1.1 {reply} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=BOUND_S)
        self._server.close()


def test_an_app_that_fails_is_reported_and_the_loop_goes_on(
    stack: LocalStack, tmp_path: Path
) -> None:
    app_server = FlakyApp([500, "close"])
    try:
        with listening(
            stack, tmp_path, "--forward-to", app_server.url, "--source", "stripe"
        ) as process:
            process.secret()
            for tag in ("one", "two", "three"):
                stripe(stack, tag)
            lines = process.lines(3)
            results = [(line["outcome"], line["status"], line["error"]) for line in lines]
            assert results == [
                ("rejected", 500, None),
                ("failed", None, "connection closed without a response"),
                ("delivered", 204, None),
            ]
            assert len(app_server.bodies) == 3
            assert process.stop() == 0
    finally:
        app_server.close()


class SwitchableProxy:
    """The stack's admin API behind a switch: off, it answers 503 as a stack restarting
    behind a load balancer would."""

    def __init__(self, upstream: str) -> None:
        self.on = threading.Event()
        self._upstream = httpx.Client(base_url=upstream, timeout=60)
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    def _app(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        if not self.on.is_set():
            return Response("restarting", status=503)(environ, start_response)
        answer = self._upstream.get(
            request.full_path.rstrip("?"),
            headers={"Authorization": request.headers["Authorization"]},
        )
        response = Response(answer.content, status=answer.status_code)
        response.headers["Content-Type"] = answer.headers.get("content-type", "")
        return response(environ, start_response)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=BOUND_S)
        self._upstream.close()


def test_a_stack_that_is_away_is_one_line_and_waited_for(stack: LocalStack, tmp_path: Path) -> None:
    proxy = SwitchableProxy(stack.url)
    try:
        with receiver() as app_server:
            process = Listening(proxy.url, tmp_path,
                                "--forward-to", app_server.url, "--since", "all")  # fmt: skip
            try:
                wait_for(lambda: "retrying" in "".join(process.stderr), timeout=BOUND_S)
                event_id, _ = stripe(stack, "away")
                wait_for(lambda: logged(stack, "stripe", event_id), timeout=BOUND_S)
                proxy.on.set()
                process.secret()
                wait_for(lambda: event_id in by_event(app_server.received), timeout=BOUND_S)
                # stderr is read by a thread of its own: the line may trail the request.
                wait_for(lambda: " is back" in "".join(process.stderr), timeout=BOUND_S)
                notes = "".join(process.stderr)
                assert notes.count("retrying") == 1, notes
                assert "the stack answered 503" in notes
                assert notes.index(" is back") > notes.index("retrying")
                assert process.proc.poll() is None
            finally:
                assert process.stop() == 0
                assert "Traceback" not in "".join(process.stderr)
    finally:
        proxy.close()


# -- `hookyard forward`, in process ----------------------------------------------------------


def forward(stack: LocalStack, data_dir: Path, *args: str) -> Any:
    return Runner().invoke(
        app, ["forward", *args, "--url", stack.url, "--token", ADMIN_TOKEN],
        env={"HOOKYARD_DATA_DIR": str(data_dir), "HOOKYARD_URL": None},
    )  # fmt: skip


def test_forward_delivers_one_stored_event_signed(stack: LocalStack, tmp_path: Path) -> None:
    event_id, body = shopify_order(stack)
    wait_for(lambda: logged(stack, "shopify", event_id), timeout=BOUND_S)
    secret = new_signing_secret()
    with receiver() as app_server:
        result = forward(stack, tmp_path, "shopify", event_id, "--to", app_server.url,
                         "--signing-secret", secret, "--json")  # fmt: skip
        assert result.exit_code == 0, (result.stdout, result.stderr)
        assert secret not in result.stderr  # given, so not printed
        [line] = [json.loads(text) for text in result.stdout.splitlines()]
        assert (line["event_id"], line["event_type"], line["status"]) == (
            event_id, "orders/create", 204,
        )  # fmt: skip
        [request] = app_server.received
        assert request.body == body
        Webhook(secret).verify(request.body, request.headers, json_parse=False)

        # Without a key: the kept one, printed, and the same on the next run.
        first = forward(stack, tmp_path, "shopify", event_id, "--to", app_server.url)
        second = forward(stack, tmp_path, "shopify", event_id, "--to", app_server.url)
        assert first.exit_code == second.exit_code == 0, (first.stderr, second.stderr)
        [kept] = re.findall(r"signing secret: (whsec_\S+)", first.stderr)
        assert kept in second.stderr
        for request in app_server.received[1:]:
            Webhook(kept).verify(request.body, request.headers, json_parse=False)
            assert request.headers["Webhook-Id"] == webhook_id("shopify", event_id)


def test_forward_of_an_unknown_event_is_one_line_and_exit_1(
    stack: LocalStack, tmp_path: Path
) -> None:
    with receiver([500]) as app_server:
        result = forward(stack, tmp_path, "stripe", "evt_nope", "--to", app_server.url)
        assert result.exit_code == 1
        [line] = result.stderr.splitlines()
        assert line == "error: no event stripe/evt_nope"
        assert app_server.received == []
        event_id, _ = stripe(stack, "rejected")
        wait_for(lambda: logged(stack, "stripe", event_id), timeout=BOUND_S)
        refused = forward(stack, tmp_path, "stripe", event_id, "--to", app_server.url)
        assert refused.exit_code == 1
        [answer] = [json.loads(text) for text in refused.stdout.splitlines()]
        assert (answer["event_id"], answer["outcome"], answer["status"]) == (
            event_id,
            "rejected",
            500,
        )


def test_events_resend_to_forwards_like_forward(stack: LocalStack, tmp_path: Path) -> None:
    event_id, body = shopify_order(stack)
    wait_for(lambda: logged(stack, "shopify", event_id), timeout=BOUND_S)
    with receiver() as app_server:
        result = Runner().invoke(
            app,
            ["events", "resend", "shopify", event_id, "--to", app_server.url,
             "--url", stack.url, "--token", ADMIN_TOKEN],
            env={"HOOKYARD_DATA_DIR": str(tmp_path), "HOOKYARD_URL": None},
        )  # fmt: skip
        assert result.exit_code == 0, (result.stdout, result.stderr)
        [kept] = re.findall(r"signing secret: (whsec_\S+)", result.stderr)
        [request] = app_server.received
        assert request.body == body
        Webhook(kept).verify(request.body, request.headers, json_parse=False)
    misuse = Runner().invoke(
        app,
        ["events", "resend", "shopify", event_id, "--to", "http://127.0.0.1:9/x",
         "--handler", "shopify-stock", "--url", stack.url, "--token", ADMIN_TOKEN],
        env={"HOOKYARD_URL": None},
    )  # fmt: skip
    assert misuse.exit_code == 2
