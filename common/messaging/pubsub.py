"""Google Cloud Pub/Sub: a `Publish` request we build ourselves, so 202 really means durable.

The handwritten `PublisherClient.publish` takes attributes as keyword arguments beside its
own (`ordering_key`, `retry`, `timeout`): an attribute with one of those names is swallowed
as an argument or clashes with it. The generated client's `Publish` takes the message with
its attributes as a mapping, so every name reaches the server as given. It has no batcher
either: a call returns the ids the service assigned or raises, and no background thread
keeps publishing after ingest answered 503 (on Cloud Run a request's CPU ends with it).

Locally and in tests the same client honours `PUBSUB_EMULATOR_HOST`; `emulator_host` does
the same from an argument, so two stacks in one process need no shared global.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tenacity import Retrying, retry_if_exception, wait_random_exponential

from common import metrics, spans
from common.errors import PublishError
from common.lazy import Lazy
from common.messaging.publisher import OutboundMessage
from common.tracing import TRACEPARENT, parse_trace

MAX_REQUEST_MESSAGES = 1000
MAX_REQUEST_BYTES = 9_000_000
"""Pub/Sub refuses a request over 1,000 messages or 10 MB; the margin covers the framing."""
MIN_ATTEMPT_S = 0.05
"""No retry is started with less time than this left: it could only time out."""


def _publisher_client() -> Any:
    from google.pubsub_v1 import PublisherClient

    return PublisherClient()


def _emulator_client(host: str) -> Any:
    """What the library builds for `PUBSUB_EMULATOR_HOST`: an insecure channel to `host` and
    no credentials. A transport instance also keeps that variable from overriding `host`."""
    import grpc
    from google.auth.credentials import AnonymousCredentials
    from google.pubsub_v1 import PublisherClient
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    transport = PublisherGrpcTransport(
        host=host,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        channel=grpc.insecure_channel(host),
    )
    return PublisherClient(transport=transport)


def _retryable(exc: BaseException) -> bool:
    """The generated client's own retry policy for Publish."""
    from google.api_core import exceptions as gexc

    return isinstance(
        exc,
        gexc.Aborted
        | gexc.Cancelled
        | gexc.DeadlineExceeded
        | gexc.InternalServerError
        | gexc.ResourceExhausted
        | gexc.ServiceUnavailable
        | gexc.Unknown,
    )


class PubSubPublisher:
    """`client`, when given, is the generated `google.pubsub_v1.PublisherClient`: the
    handwritten `google.cloud.pubsub_v1` one replaces its `publish`. `emulator_host`
    (`HOST:PORT`) publishes to an emulator instead of Google, as `PUBSUB_EMULATOR_HOST` does."""

    def __init__(
        self,
        project: str,
        timeout_s: float,
        client: Any = None,
        *,
        emulator_host: str | None = None,
    ) -> None:
        self._project = project
        self._timeout = timeout_s
        factory = _publisher_client
        if emulator_host:
            factory = functools.partial(_emulator_client, emulator_host)
        self._client: Lazy[Any] = Lazy(factory, client)

    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], ordering_key: str = ""
    ) -> str:
        """The message's `traceparent`, when it has one, is this publish's span: the push
        that delivers it is the span's child, on the same trace."""
        with spans.span(f"publish {topic}", parse_trace(attributes), "producer") as context:
            if context is not None and TRACEPARENT in attributes:
                attributes = {**attributes, TRACEPARENT: context.traceparent}
            message = OutboundMessage(data, attributes, ordering_key)
            return self.publish_many(topic, [message])[0]

    def publish_many(self, topic: str, messages: Sequence[OutboundMessage]) -> list[str]:
        """In as few requests as Pub/Sub's limits allow, in order, within one deadline. A
        failure part way leaves the earlier requests published: consumers dedupe."""
        started = time.monotonic()
        ok = False
        try:
            ids = self._publish_many(topic, messages, started + self._timeout)
            ok = True
        finally:
            metrics.publish_finished(topic, time.monotonic() - started, ok=ok)
        return ids

    def _publish_many(
        self, topic: str, messages: Sequence[OutboundMessage], deadline: float
    ) -> list[str]:
        try:
            from google.pubsub_v1 import types

            client = self._client.get()  # building it looks up credentials
            path = client.topic_path(self._project, topic)
            ids: list[str] = []
            for chunk in _chunks([_message(types, m) for m in messages]):
                request = types.PublishRequest(topic=path, messages=chunk)
                ids.extend(self._send(client, request, deadline))
        except PublishError:
            raise
        except Exception as exc:  # API errors, credentials, transport, deadline
            raise PublishError(f"publish to {topic} failed: {type(exc).__name__}") from exc
        return ids

    def _send(self, client: Any, request: Any, deadline: float) -> list[str]:
        """Retries what Google retries, with jittered backoff, until our deadline."""

        def time_left() -> float:
            return deadline - time.monotonic()

        backoff = wait_random_exponential(multiplier=0.1, max=2.0)
        retrying = Retrying(
            retry=retry_if_exception(_retryable),
            stop=lambda _: time_left() <= MIN_ATTEMPT_S,
            wait=lambda state: min(backoff(state), max(0.0, time_left() - MIN_ATTEMPT_S)),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                remaining = time_left()
                if remaining <= 0:
                    raise TimeoutError("publish deadline passed")
                response = client.publish(request=request, retry=None, timeout=remaining)
        ids = [str(i) for i in response.message_ids]
        if len(ids) != len(request.messages):
            raise PublishError(f"Pub/Sub returned {len(ids)} ids for {len(request.messages)}")
        return ids


def _message(types: Any, message: OutboundMessage) -> Any:
    return types.PubsubMessage(
        data=message.data,
        attributes=dict(message.attributes),
        ordering_key=message.ordering_key,
    )


def _chunks(messages: list[Any]) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    size = 0
    for message in messages:
        message_size = type(message).pb(message).ByteSize()
        full = len(chunk) == MAX_REQUEST_MESSAGES or size + message_size > MAX_REQUEST_BYTES
        if chunk and full:
            yield chunk
            chunk, size = [], 0
        chunk.append(message)
        size += message_size
    if chunk:
        yield chunk
