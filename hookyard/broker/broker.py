"""The local stand-in for Pub/Sub push: durable publish, then delivery over real HTTP.

State lives in PostgreSQL (schema `emulator`), so a message id means the message is
committed, a restart loses nothing, and a publisher in another process wakes the
dispatcher through NOTIFY.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import httpx
from sqlalchemy.engine import Engine

from common.db.engine import single_statement
from common.errors import BadRequest, NotFound
from common.logging import get_logger
from common.oidc import TokenProvider
from common.topology import Topology
from hookyard.broker import store
from hookyard.broker.backoff import PushBackoff
from hookyard.broker.dispatcher import Dispatcher
from hookyard.broker.routing import Routes
from hookyard.broker.store import NewMessage
from hookyard.broker.wakeup import Wakeup

log = get_logger(__name__)

MAX_MESSAGE_BYTES = 10 * 1000 * 1000
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 1024
MAX_ORDERING_KEY_BYTES = 1024


MAX_CONCURRENT_PUSHES = 16
PUBLISH_THREADS = 16
"""Threads of the Pub/Sub API serving publishes, each holding a connection while it stores."""


class Broker:
    def __init__(
        self,
        engine: Engine,
        topology: Topology,
        push_base_url: str,
        *,
        project: str = "local-project",
        max_concurrent_pushes: int = MAX_CONCURRENT_PUSHES,
        http_client: httpx.Client | None = None,
        max_idle_s: float = 5.0,
        token: TokenProvider | None = None,
        push_backoff: PushBackoff | None = None,
        bookkeeping_engine: Engine | None = None,
    ) -> None:
        """`max_idle_s` caps any one sleep of the dispatcher: a safety net, not the wake-up path.
        `token` is the OIDC token every push carries, as a subscription's `oidc_token` does.
        `push_backoff` bounds the pause after nacks on subscriptions without a retry policy
        (Pub/Sub's own by default). `bookkeeping_engine` carries the dispatcher's leases,
        acks, nacks and dead-lettering, whose loss in a crash only means a message is pushed
        again (see `create_db_engine`'s `asynchronous_commit`); publishes always use `engine`."""
        if max_concurrent_pushes < 1:
            raise ValueError("max_concurrent_pushes must be at least 1")
        self.project = project
        self._engine = engine
        self._bookkeeping = bookkeeping_engine or engine
        self._topology = topology
        self._routes = Routes(topology)
        self._push_base_url = push_base_url
        self._max_concurrent = max_concurrent_pushes
        self._http = http_client
        self._owns_http = http_client is None
        self._max_idle_s = max_idle_s
        self._token = token
        self._push_backoff = push_backoff
        self._lock = threading.Lock()
        self._installed = False
        self._wakeup: Wakeup | None = None
        self._dispatcher: Dispatcher | None = None
        self._stopped = False

    @property
    def topology(self) -> Topology:
        return self._topology

    def install(self) -> None:
        with self._engine.begin() as conn:
            store.install(conn)
        self._installed = True

    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], ordering_key: str = ""
    ) -> str:
        return self.publish_many(topic, [NewMessage(data, dict(attributes), ordering_key)])[0]

    def publish_many(self, topic: str, messages: Sequence[NewMessage]) -> list[str]:
        """All or nothing, like one Pub/Sub publish request; ids are returned after commit.

        A subscription whose filter rejects a message gets no delivery for it: Pub/Sub
        acknowledges such messages itself, so they are never pushed and never dead-lettered.
        """
        if self._topology.topic(topic) is None:
            raise NotFound(f"topic {topic!r} does not exist")
        for message in messages:
            check_limits(message)
        if not self._installed:
            self.install()
        routed = [(m, self._routes.subscribers(topic, m.attributes)) for m in messages]
        with single_statement(self._engine) as conn:
            ids = store.publish(conn, topic, routed)
        wakeup = self._wakeup
        if wakeup is not None:
            wakeup.set()
        log.debug("pubsub published", topic=topic, message_ids=[str(i) for i in ids])
        return [str(i) for i in ids]

    def start(self) -> None:
        with self._lock:
            if self._dispatcher is not None or self._stopped:
                raise RuntimeError("a Broker starts once")
            self.install()
            if self._http is None:
                self._http = httpx.Client(
                    limits=httpx.Limits(
                        max_connections=self._max_concurrent,
                        max_keepalive_connections=self._max_concurrent,
                    )
                )
            self._wakeup = Wakeup(self._engine, store.CHANNEL)
            self._dispatcher = Dispatcher(
                self._bookkeeping,
                self._topology,
                push_base_url=self._push_base_url,
                project=self.project,
                max_concurrent_pushes=self._max_concurrent,
                http_client=self._http,
                wakeup=self._wakeup,
                max_idle_s=self._max_idle_s,
                token=self._token,
                push_backoff=self._push_backoff,
            )
            self._dispatcher.start()
        log.info("pubsub broker started", push_base_url=self._push_base_url)

    def stop(self, timeout: float = 10) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if self._dispatcher is not None:
            self._dispatcher.stop(timeout)
        if self._wakeup is not None:
            self._wakeup.close()
        if self._owns_http and self._http is not None:
            self._http.close()
        log.info("pubsub broker stopped")

    def pending_count(self, subscription: str | None = None) -> int:
        """Deliveries neither acked nor dead-lettered yet."""
        if not self._installed:
            self.install()
        with self._engine.connect() as conn:
            return store.pending_count(conn, subscription)


def check_limits(message: NewMessage) -> None:
    """Pub/Sub's documented limits, enforced so local code cannot rely on more."""
    attributes = message.attributes
    if not message.data and not attributes:
        raise BadRequest("a message needs data or at least one attribute")
    if len(attributes) > MAX_ATTRIBUTES:
        raise BadRequest(f"a message has at most {MAX_ATTRIBUTES} attributes")
    size = len(message.data) + len(message.ordering_key.encode("utf-8"))
    for key, value in attributes.items():
        key_bytes, value_bytes = len(key.encode("utf-8")), len(value.encode("utf-8"))
        if not key_bytes or key_bytes > MAX_ATTRIBUTE_KEY_BYTES:
            raise BadRequest(f"attribute keys are 1 to {MAX_ATTRIBUTE_KEY_BYTES} bytes")
        if value_bytes > MAX_ATTRIBUTE_VALUE_BYTES:
            raise BadRequest(f"attribute {key!r} exceeds {MAX_ATTRIBUTE_VALUE_BYTES} bytes")
        size += key_bytes + value_bytes
    if len(message.ordering_key.encode("utf-8")) > MAX_ORDERING_KEY_BYTES:
        raise BadRequest(f"ordering keys are at most {MAX_ORDERING_KEY_BYTES} bytes")
    if size > MAX_MESSAGE_BYTES:
        raise BadRequest("message exceeds 10 MB")
