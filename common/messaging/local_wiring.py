"""Where the production adapters point when the local stack's emulators stand in for Google.

The local stack and the target processes it runs use Pub/Sub's and Cloud Tasks' own client
libraries, as a deployment does; only the endpoints differ: the stack's Pub/Sub gRPC API (as
`PUBSUB_EMULATOR_HOST`), its Cloud Tasks REST API, and a token audience that is the stack's
address, as for every token the stack mints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.config import Settings

if TYPE_CHECKING:
    from common.messaging.cloud_tasks import CloudTasksQueue
    from common.messaging.pubsub import PubSubPublisher


@dataclass(frozen=True, slots=True)
class LocalWiring:
    stack_url: str
    worker_url: str
    pubsub_emulator_host: str
    tasks_endpoint: str | None = None
    """The Cloud Tasks REST API, when not at the stack's own address."""

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalWiring:
        """A process beside the stack: what the stack wrote into its environment."""
        stack = settings.broker_url
        return cls(
            stack_url=stack,
            worker_url=settings.worker_url or stack,
            pubsub_emulator_host=settings.pubsub_emulator_host
            or f"127.0.0.1:{settings.pubsub_port}",
            tasks_endpoint=settings.cloud_tasks_endpoint,
        )

    def environment(self) -> dict[str, str]:
        """The settings that make `from_settings` give this wiring back in another process."""
        environment = {
            "emulator_url": self.stack_url,
            "worker_url": self.worker_url,
            "pubsub_emulator_host": self.pubsub_emulator_host,
        }
        if self.tasks_endpoint is not None:
            environment["cloud_tasks_endpoint"] = self.tasks_endpoint
        return environment

    def publisher(self, settings: Settings) -> PubSubPublisher:
        from common.messaging.pubsub import PubSubPublisher

        return PubSubPublisher(
            settings.gcp_project, settings.publish_timeout_s,
            emulator_host=self.pubsub_emulator_host,
        )  # fmt: skip

    def task_queue(self, settings: Settings) -> CloudTasksQueue:
        from common.messaging.cloud_tasks import CloudTasksQueue
        from common.service_identity import LOCAL_CALLERS

        return CloudTasksQueue(
            settings.gcp_project,
            settings.gcp_region,
            worker_url=self.worker_url,
            audience=self.stack_url,
            service_account=LOCAL_CALLERS["tasks"],
            timeout_s=settings.publish_timeout_s,
            endpoint=settings.cloud_tasks_endpoint or self.tasks_endpoint or self.stack_url,
        )
