"""Publishing is the one thing ingest must get right: a message id means the broker has it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from common.config import get_settings
from common.messaging.tasks import TaskQueue


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    data: bytes
    attributes: Mapping[str, str]
    ordering_key: str = ""


class Publisher(Protocol):
    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], ordering_key: str = ""
    ) -> str:
        """Returns the message id once the broker confirmed it durable; else `PublishError`."""
        ...

    def publish_many(self, topic: str, messages: Sequence[OutboundMessage]) -> list[str]:
        """Several messages in as few round trips as the transport allows (replays)."""
        ...


@lru_cache(maxsize=1)
def get_task_queue() -> TaskQueue:
    settings = get_settings()
    if settings.env == "gcp":
        from common.messaging.cloud_tasks import CloudTasksQueue

        if settings.worker_url is None:
            from common.errors import ConfigError

            raise ConfigError("HOOKYARD_WORKER_URL is required to enqueue Cloud Tasks")
        return CloudTasksQueue(
            settings.gcp_project,
            settings.gcp_region,
            worker_url=settings.worker_url,
            service_account=settings.tasks_service_account,
            timeout_s=settings.publish_timeout_s,
            endpoint=settings.cloud_tasks_endpoint,
        )
    from common.messaging.local_wiring import LocalWiring

    return LocalWiring.from_settings(settings).task_queue(settings)


@lru_cache(maxsize=1)
def get_publisher() -> Publisher:
    settings = get_settings()
    if settings.env == "gcp":
        from common.messaging.pubsub import PubSubPublisher

        return PubSubPublisher(
            settings.gcp_project,
            settings.publish_timeout_s,
            emulator_host=settings.pubsub_emulator_host,
        )
    from common.messaging.local_wiring import LocalWiring

    return LocalWiring.from_settings(settings).publisher(settings)
