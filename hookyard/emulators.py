"""The local stand-ins for Google's messaging: the Pub/Sub broker with its gRPC API and the
Cloud Tasks emulator, as one unit the stack runs either in its own process or beside the
front door (`hookyard dev --single-process`, most tests).

Publishing and task creation work from `open()`; pushes and task attempts begin at
`start()`, once the worker they deliver to answers, so a backlog left by the last run is not
burned into retry backoff while the worker is still importing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from common.config import Settings
from common.logging import get_logger
from common.topology import Topology
from hookyard.broker import Broker
from hookyard.broker.broker import MAX_CONCURRENT_PUSHES, PUBLISH_THREADS
from hookyard.local_identity import LocalIdentity
from hookyard.tasks import TaskEmulator

if TYPE_CHECKING:
    from hookyard.broker.grpc_api import PubSubGrpcServer

log = get_logger(__name__)


def emulator_pool_size(settings: Settings) -> int:
    """Connections the emulators' threads hold at once: the Pub/Sub API's, the dispatchers'
    (pushes that fail settle on their own thread) and the HTTP server's (task REST calls)."""
    return settings.db_pool_size + PUBLISH_THREADS + MAX_CONCURRENT_PUSHES


@dataclass
class Emulators:
    engine: Engine
    topology: Topology
    settings: Settings
    identity: LocalIdentity
    worker_url: str
    reserved_port: bool = False
    """The Pub/Sub port is held for us by the supervisor (see `PubSubGrpcServer`)."""
    bookkeeping_engine: Engine | None = None
    """For the broker's leases and acks (see `Broker`); `engine` when None."""
    broker: Broker | None = field(default=None, init=False)
    tasks: TaskEmulator | None = field(default=None, init=False)
    pubsub_grpc: PubSubGrpcServer | None = field(default=None, init=False)

    @property
    def pubsub_address(self) -> str:
        """`PUBSUB_EMULATOR_HOST` for google-cloud-pubsub clients publishing here."""
        assert self.pubsub_grpc is not None
        return self.pubsub_grpc.address

    def open(self) -> None:
        """Schemas installed and the Pub/Sub API listening; nothing is delivered yet."""
        from hookyard.broker.grpc_api import PubSubGrpcServer  # grpc: only where it serves

        settings, identity = self.settings, self.identity
        project, location = settings.gcp_project, settings.gcp_region
        self.broker = Broker(
            self.engine, self.topology, self.worker_url, project=project,
            token=identity.provider("pubsub"), bookkeeping_engine=self.bookkeeping_engine,
        )  # fmt: skip
        self.broker.install()
        self.tasks = TaskEmulator(
            self.engine, self.topology, self.worker_url, project=project, location=location,
            token=identity.provider("tasks"), minter=identity.minter.token,
        )  # fmt: skip
        self.tasks.install()
        self.pubsub_grpc = PubSubGrpcServer(
            self.broker, "127.0.0.1", settings.pubsub_port, reserved=self.reserved_port
        )
        self.pubsub_grpc.start()

    def start(self) -> None:
        """Pushes and task attempts begin."""
        assert self.broker is not None
        assert self.tasks is not None
        self.broker.start()
        self.tasks.start()

    def stop(self) -> None:
        """The API first, so nothing new arrives; then the dispatchers drain the pushes and
        tasks on the wire against a worker that is still up. Idempotent."""
        if self.pubsub_grpc is not None:
            self.pubsub_grpc.stop()
            self.pubsub_grpc = None
        for component in (self.broker, self.tasks):
            if component is not None:
                with contextlib.suppress(Exception):
                    component.stop()
        self.broker = self.tasks = None
