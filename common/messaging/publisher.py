"""Publishing is the one thing ingest must get right: a message id means the broker has it."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Protocol

from common.config import get_settings


class Publisher(Protocol):
    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], ordering_key: str = ""
    ) -> str:
        """Returns the message id once the broker confirmed it durable; else `PublishError`."""
        ...


@lru_cache(maxsize=1)
def get_publisher() -> Publisher:
    settings = get_settings()
    if settings.env == "gcp":
        from common.messaging.pubsub import PubSubPublisher

        return PubSubPublisher(settings.gcp_project, settings.publish_timeout_s)
    from common.messaging.local import LocalPublisher

    return LocalPublisher(settings.broker_url, settings.gcp_project, settings.publish_timeout_s)
