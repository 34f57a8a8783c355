"""Pub/Sub's gRPC `Publisher` service over the local broker, so google-cloud-pubsub's own
clients publish here through `PUBSUB_EMULATOR_HOST` exactly as into Google's emulator.

Requests arrive as raw bytes and are parsed here: a deserializer that raises makes grpc
answer INTERNAL, and bad input must get Google's INVALID_ARGUMENT. Statuses and their
details are the ones Google's emulator sends for the same request. The service is
unauthenticated like Google's emulator, and for the same reason only loopback peers are
served. Only Publish and topic lookup exist: every other method is UNIMPLEMENTED.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import grpc
from google.pubsub_v1 import types
from sqlalchemy.exc import DataError, SQLAlchemyError

from common.errors import BadRequest, ConfigError, Forbidden, NotFound, Problem
from common.logging import get_logger
from common.storable import attributes_problem, text_problem
from hookyard.broker.broker import PUBLISH_THREADS, Broker
from hookyard.broker.store import NewMessage

log = get_logger(__name__)

SERVICE = "google.pubsub.v1.Publisher"
MAX_REQUEST_BYTES = 10 * 1024 * 1024
"""Pub/Sub refuses a larger publish request with INVALID_ARGUMENT."""
MAX_RECEIVE_BYTES = MAX_REQUEST_BYTES + 1024 * 1024
"""Above this grpc itself refuses the request (RESOURCE_EXHAUSTED) before it is buffered."""
MAX_REQUEST_MESSAGES = 1000
MAX_WORKERS = PUBLISH_THREADS
MAX_CONCURRENT_RPCS = 256
"""Calls beyond this are refused with RESOURCE_EXHAUSTED instead of queueing without bound."""
DEFAULT_PAGE_SIZE = 100

_TOPIC = re.compile(
    r"projects/(?P<project>[^/]{1,100})/topics/(?P<topic>[A-Za-z][A-Za-z0-9_.~+%-]{2,254})"
)
_PROJECT = re.compile(r"projects/(?P<project>[^/]{1,100})")
_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
}
TOPIC_NOT_FOUND = "Topic not found"

if TYPE_CHECKING:
    RawHandler = grpc.RpcMethodHandler[bytes, bytes]


class PublisherService:
    """The pure part: proto-plus requests in, responses out, `Problem`s for refusals."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def publish(self, request: types.PublishRequest) -> types.PublishResponse:
        topic = self._known_topic(request.topic)
        if not request.messages:
            raise BadRequest("No messages to publish")
        if len(request.messages) > MAX_REQUEST_MESSAGES:
            raise BadRequest("Too many messages to publish")
        messages = [_new_message(m) for m in request.messages]
        try:
            ids = self._broker.publish_many(topic, messages)
        except NotFound as exc:
            raise NotFound(TOPIC_NOT_FOUND) from exc
        return types.PublishResponse(message_ids=ids)

    def get_topic(self, request: types.GetTopicRequest) -> types.Topic:
        self._known_topic(request.topic)
        return types.Topic(name=request.topic)

    def list_topics(self, request: types.ListTopicsRequest) -> types.ListTopicsResponse:
        match = _PROJECT.fullmatch(request.project)
        if match is None:
            raise BadRequest(f"Invalid [projects] name: (name={_shown(request.project)})")
        names: list[str] = []
        if match["project"] == self._broker.project:
            names = [_topic_path(request.project, t.name) for t in self._broker.topology.topics]
        page, token = _page(names, request.page_size, request.page_token)
        return types.ListTopicsResponse(
            topics=[types.Topic(name=n) for n in page], next_page_token=token
        )

    def list_topic_subscriptions(
        self, request: types.ListTopicSubscriptionsRequest
    ) -> types.ListTopicSubscriptionsResponse:
        topic = self._known_topic(request.topic)
        project = f"projects/{self._broker.project}"
        names = [
            f"{project}/subscriptions/{s.name}"
            for s in self._broker.topology.subscriptions_of(topic)
        ]
        page, token = _page(names, request.page_size, request.page_token)
        return types.ListTopicSubscriptionsResponse(subscriptions=page, next_page_token=token)

    def _known_topic(self, name: str) -> str:
        """The short name of a topic of this broker; a topic of another project is as
        unknown as a missing one, as in Google's emulator."""
        match = _TOPIC.fullmatch(name)
        if match is None or match["topic"].startswith("goog"):
            raise BadRequest(f"Invalid [topics] name: (name={_shown(name)})")
        topic = match["topic"]
        if match["project"] != self._broker.project or self._broker.topology.topic(topic) is None:
            raise NotFound(TOPIC_NOT_FOUND)
        return topic


def _new_message(message: types.PubsubMessage) -> NewMessage:
    attributes = dict(message.attributes)
    if not message.data and not attributes:
        raise BadRequest("Some messages are empty")
    if (found := attributes_problem(attributes)) is not None:
        raise BadRequest(f"Invalid attribute: {found[1]}")
    if any(key.startswith("goog") for key in attributes):
        raise BadRequest("Attribute keys must not start with 'goog'")
    if text_problem(message.ordering_key) is not None:
        raise BadRequest("Invalid ordering key")
    return NewMessage(bytes(message.data), attributes, message.ordering_key)


def _page(names: Sequence[str], page_size: int, page_token: str) -> tuple[list[str], str]:
    """The names after `page_token` (the last name of the previous page), in order."""
    if page_size < 0:
        raise BadRequest("page_size must not be negative")
    size = page_size or DEFAULT_PAGE_SIZE
    rest = sorted(n for n in names if n > page_token) if page_token else sorted(names)
    page = rest[:size]
    return page, page[-1] if len(rest) > size else ""


def _topic_path(project_path: str, topic: str) -> str:
    return f"{project_path}/topics/{topic}"


def _shown(name: str) -> str:
    """The caller's own name in a detail, bounded; never logged."""
    return name if len(name) <= 300 else name[:300] + "..."


def is_loopback_peer(peer: str) -> bool:
    """`context.peer()` is `ipv4:127.0.0.1:5000` or `ipv6:%5B::1%5D:5000` (brackets
    percent-encoded by recent grpc); anything else, unix sockets included, is not served."""
    kind, _, address = peer.partition(":")
    if kind not in {"ipv4", "ipv6"}:
        return False
    host = unquote(address).rsplit(":", 1)[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _unary(name: str, request_type: Any, call: Callable[[Any], Any]) -> RawHandler:
    def handle(raw: bytes, context: grpc.ServicerContext) -> bytes:
        answer = _answer(name, request_type, call, raw, context.peer())
        if isinstance(answer, bytes):
            return answer
        return context.abort(*answer)

    return grpc.unary_unary_rpc_method_handler(handle)


def _answer(
    name: str,
    request_type: Any,
    call: Callable[[Any], Any],
    raw: bytes,
    peer: str,
) -> bytes | tuple[grpc.StatusCode, str]:
    """The serialized response, or the status to abort with; logs the failure class only."""
    try:
        if not is_loopback_peer(peer):
            raise Forbidden("The local Pub/Sub emulator serves loopback clients only")
        if len(raw) > MAX_REQUEST_BYTES:
            raise BadRequest(f"Request payload size exceeds the limit: {MAX_REQUEST_BYTES} bytes.")
        try:
            request = request_type.deserialize(raw)
        except Exception as exc:  # DecodeError: garbage, bad UTF-8, corrupt nesting
            raise BadRequest(f"Invalid {request_type.__name__}") from exc
        response = call(request)
        serialized: bytes = type(response).serialize(response)
        return serialized
    except Problem as exc:
        code = _STATUS.get(exc.status, grpc.StatusCode.UNAVAILABLE)
        log.info("pubsub grpc refused", method=name, code=code.name, error=type(exc).__name__)
        return code, exc.detail
    except DataError as exc:
        log.warning(
            "pubsub grpc refused", method=name, code="INVALID_ARGUMENT", error=type(exc).__name__
        )
        return grpc.StatusCode.INVALID_ARGUMENT, "The messages cannot be stored"
    except SQLAlchemyError as exc:
        log.error("pubsub grpc storage failed", method=name, error=type(exc).__name__)
        return grpc.StatusCode.UNAVAILABLE, "The broker's database is unavailable"
    except Exception as exc:
        log.exception("pubsub grpc failed", method=name, error=type(exc).__name__)
        return grpc.StatusCode.INTERNAL, "Internal error"


def publisher_handler(broker: Broker) -> grpc.GenericRpcHandler:
    service = PublisherService(broker)
    handlers: dict[str, RawHandler] = {
        "Publish": _unary("Publish", types.PublishRequest, service.publish),
        "GetTopic": _unary("GetTopic", types.GetTopicRequest, service.get_topic),
        "ListTopics": _unary("ListTopics", types.ListTopicsRequest, service.list_topics),
        "ListTopicSubscriptions": _unary(
            "ListTopicSubscriptions",
            types.ListTopicSubscriptionsRequest,
            service.list_topic_subscriptions,
        ),
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


class PubSubGrpcServer:
    """A `grpc.server` serving `google.pubsub.v1.Publisher` for one broker."""

    def __init__(
        self, broker: Broker, host: str = "127.0.0.1", port: int = 0, *, reserved: bool = False
    ) -> None:
        """`reserved`: `port` is held for this server by a socket its parent bound with
        SO_REUSEPORT (and never listens on), so this one must share it to bind."""
        self._broker = broker
        self._reserved = reserved
        self._host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._stopped = False
        self.port = 0

    @property
    def address(self) -> str:
        """What `PUBSUB_EMULATOR_HOST` is set to."""
        if not self.port:
            raise RuntimeError("the Pub/Sub gRPC server is not listening")
        return f"{_bracketed(self._host)}:{self.port}"

    def start(self) -> int:
        """Binds and serves; returns the bound port (a free one when asked for 0)."""
        with self._lock:
            if self._server is not None or self._stopped:
                raise RuntimeError("a PubSubGrpcServer starts once")
            executor = futures.ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="pubsub-grpc")
            server = grpc.server(
                executor,
                handlers=[publisher_handler(self._broker)],
                options=[
                    ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
                    # grpc shares ports by default: a second stack on 8085 would bind too
                    # and receive half of the first one's publishes.
                    ("grpc.so_reuseport", 1 if self._reserved else 0),
                ],
                maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
            )
            where = f"{_bracketed(self._host)}:{self._requested_port}"
            try:
                port = server.add_insecure_port(where)
            except RuntimeError:
                port = 0
            if not port:
                executor.shutdown(wait=False)
                raise ConfigError(
                    f"cannot listen for Pub/Sub gRPC on {where}: the port is in use "
                    "(HOOKYARD_PUBSUB_PORT moves it; 0 picks a free one)"
                )
            server.start()
            self._server, self._executor, self.port = server, executor, port
        log.info("pubsub grpc listening", address=self.address)
        return port

    def stop(self, grace: float | None = 5.0) -> None:
        """Lets calls in flight finish for up to `grace` seconds; a second call does nothing."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            server, executor = self._server, self._executor
        if server is not None:
            server.stop(grace).wait()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        log.info("pubsub grpc stopped")


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
