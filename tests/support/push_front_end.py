"""What Google's push service does between a subscription and its endpoint, for a test.

Pub/Sub, not the subscriber, attaches the OIDC token to a push: Google signs one for the
subscription's `oidc_token` service account and audience. Google's emulator attaches none and
Hookyard's broker signs with its own key, so in the deployed shape this front end stands where
Google's push service stands: it forwards `POST /pubsub/{subscription}` to the worker with
`Authorization` replaced by a token from the test's key, and passes the answer back, so a 5xx
is a nack to whichever broker pushed. It records what it forwarded and what the worker said.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
from flask import Request, Response

from hookyard.server import create_app
from tests.support.wsgi import serving

FORWARD_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Forwarded:
    subscription: str
    event_id: str | None
    status: int


@dataclass
class PushFrontEnd:
    url: str = ""
    forwarded: list[Forwarded] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answered(self, subscription: str, event_id: str, status: int) -> int:
        """How many pushes of `event_id` to `subscription` the worker answered with `status`."""
        with self._lock:
            return sum(
                1
                for f in self.forwarded
                if (f.subscription, f.event_id, f.status) == (subscription, event_id, status)
            )

    def _record(self, entry: Forwarded) -> None:
        with self._lock:
            self.forwarded.append(entry)


@contextmanager
def push_front_end(worker_url: str, token: Callable[[], str]) -> Iterator[PushFrontEnd]:
    """`token` is the push service account's, for the worker's audience, fresh per push."""
    front = PushFrontEnd()
    client = httpx.Client(base_url=worker_url, timeout=FORWARD_TIMEOUT_S)

    def forward(request: Request) -> Response:
        body = request.get_data()
        upstream = client.post(
            request.path,
            content=body,
            headers={
                "Content-Type": request.headers.get("Content-Type", "application/json"),
                "Authorization": f"Bearer {token()}",
            },
        )
        subscription = request.path.rsplit("/", 1)[-1]
        front._record(Forwarded(subscription, _event_id(body), upstream.status_code))
        return Response(
            upstream.content,
            status=upstream.status_code,
            content_type=upstream.headers.get("Content-Type"),
        )

    try:
        with serving(create_app({"pubsub": forward})) as url:
            front.url = url
            yield front
    finally:
        client.close()


def _event_id(body: bytes) -> str | None:
    try:
        attributes = json.loads(body)["message"].get("attributes") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    value = attributes.get("event_id")
    return value if isinstance(value, str) else None
