"""Google Cloud Pub/Sub: wait on the publish future so 202 really means durable."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from common.errors import PublishError
from common.lazy import Lazy
from common.messaging.publisher import OutboundMessage


def _publisher_client() -> Any:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    return pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
        # Ingest publishes one message per request and waits for it.
        batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.0),
    )


class PubSubPublisher:
    def __init__(self, project: str, timeout_s: float, client: Any = None) -> None:
        self._project = project
        self._timeout = timeout_s
        self._client: Lazy[Any] = Lazy(_publisher_client, client)

    def _get_client(self) -> Any:
        return self._client.get()

    def publish_many(self, topic: str, messages: Sequence[OutboundMessage]) -> list[str]:
        """Every future is started before any is awaited, so the client batches them."""
        client = self._get_client()
        path = client.topic_path(self._project, topic)
        futures = [
            client.publish(path, m.data, ordering_key=m.ordering_key, **m.attributes)
            for m in messages
        ]
        try:
            return [str(f.result(timeout=self._timeout)) for f in futures]
        except Exception as exc:
            raise PublishError(f"publish to {topic} failed: {type(exc).__name__}") from exc

    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], ordering_key: str = ""
    ) -> str:
        client = self._get_client()
        path = client.topic_path(self._project, topic)
        try:
            future = client.publish(path, data, ordering_key=ordering_key, **attributes)
            message_id: str = future.result(timeout=self._timeout)
        except Exception as exc:
            if ordering_key:
                # A batch that failed pauses its key until resumed. One that timed out here
                # may still be in flight, its key not paused: the client then raises
                # RuntimeError, which must not replace the PublishError callers expect.
                with contextlib.suppress(RuntimeError):
                    client.resume_publish(path, ordering_key)
            raise PublishError(f"publish to {topic} failed: {type(exc).__name__}") from exc
        return message_id
