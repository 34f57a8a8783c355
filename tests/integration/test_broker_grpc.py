"""The local broker's Pub/Sub gRPC API, driven by google-cloud-pubsub's own clients and by
raw gRPC calls over real sockets, against the real local stack.

What a publish leaves behind is read from the broker's tables (`emulator.messages`), so a
refused request is seen to store nothing, and an accepted one to store exactly what was sent.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.api_core import exceptions
from google.cloud import pubsub_v1 as handwritten
from google.pubsub_v1 import PublisherClient, types
from sqlalchemy.engine import Engine

from common.config import get_settings
from common.envelope import PushEnvelope
from common.errors import ConfigError, PublishError
from common.messaging.publisher import OutboundMessage, get_publisher
from common.messaging.pubsub import PubSubPublisher
from common.topology import get_topology
from hookyard.broker import Broker
from hookyard.broker.grpc_api import MAX_RECEIVE_BYTES, MAX_REQUEST_BYTES, PubSubGrpcServer
from hookyard.stack import LocalStack
from hookyard.stack_url import pubsub_record_path
from tests.support.google_credentials import without_google_credentials
from tests.support.postgres import TestServer
from tests.support.stack import free_port, module_stack, running_stack, wait_for

pytestmark = pytest.mark.timeout(300)

PROJECT = "local-project"
EVENTS = f"projects/{PROJECT}/topics/events"
CALL_TIMEOUT_S = 60.0
LIBRARY_PARAMETER_NAMES = {"timeout": "t", "retry": "r", "ordering_key": "o", "topic": "x"}


@pytest.fixture
def no_google(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials and no PUBSUB_EMULATOR_HOST: nothing reaches Google by accident."""
    without_google_credentials(monkeypatch, tmp_path / "home")


@pytest.fixture(scope="module")
def shared(pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with module_stack(pg_server, tmp_path_factory.mktemp("grpc")) as stack:
        yield stack


@pytest.fixture(scope="module")
def channel(shared: LocalStack) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(shared.pubsub_emulator_host) as opened:
        yield opened


class Pushes:
    """Envelopes the stack's worker received, recorded before it handles them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: list[PushEnvelope] = []

    def __call__(self, envelope: PushEnvelope) -> None:
        with self._lock:
            self.seen.append(envelope)

    def of(self, subscription: str, message_id: str) -> PushEnvelope | None:
        with self._lock:
            return next(
                (
                    e
                    for e in self.seen
                    if e.short_subscription == subscription and e.message.message_id == message_id
                ),
                None,
            )


@pytest.fixture
def pushes() -> Pushes:
    return Pushes()


@pytest.fixture
def recording_stack(
    pg_server: TestServer, database: str, tmp_path: Path, pushes: Pushes
) -> Iterator[LocalStack]:
    with running_stack(pg_server, database, tmp_path, worker_hook=pushes) as stack:
        yield stack


def _stored(engine: Engine, message_id: str) -> sa.Row[Any]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT topic, data, attributes, ordering_key FROM emulator.messages WHERE id = :id"
            ),
            {"id": int(message_id)},
        ).one()


def _message_count(stack: LocalStack) -> int:
    assert stack.engine is not None
    with stack.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM emulator.messages")).scalar_one())


# --- google-cloud-pubsub's clients, through the library's own PUBSUB_EMULATOR_HOST --------


def test_the_generated_client_publishes_through_pubsub_emulator_host(
    recording_stack: LocalStack, pushes: Pushes, no_google: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every attribute arrives, those named like the handwritten client's parameters too."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", recording_stack.pubsub_emulator_host)
    attributes = {"source": "grpc-test", **LIBRARY_PARAMETER_NAMES}
    message = types.PubsubMessage(data=b"\x00\xffbytes", attributes=attributes, ordering_key="k1")
    client = PublisherClient()
    response = client.publish(
        request=types.PublishRequest(topic=EVENTS, messages=[message]), timeout=CALL_TIMEOUT_S
    )

    [message_id] = response.message_ids
    assert recording_stack.engine is not None
    row = _stored(recording_stack.engine, message_id)
    assert (row.topic, bytes(row.data), row.attributes, row.ordering_key) == (
        "events",
        b"\x00\xffbytes",
        attributes,
        "k1",
    )
    pushed = wait_for(lambda: pushes.of("event-log", message_id))
    assert (pushed.message.data, pushed.message.attributes) == (b"\x00\xffbytes", attributes)


def test_the_handwritten_client_publishes_with_ordering_through_pubsub_emulator_host(
    recording_stack: LocalStack, no_google: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What users' own services call: batching, futures and ordering keys included."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", recording_stack.pubsub_emulator_host)
    client = handwritten.PublisherClient(
        publisher_options=handwritten.types.PublisherOptions(enable_message_ordering=True)
    )
    futures = [
        client.publish(EVENTS, f"m{i}".encode(), ordering_key="acct_1", seq=str(i))
        for i in range(3)
    ]
    ids = [f.result(timeout=CALL_TIMEOUT_S) for f in futures]

    assert recording_stack.engine is not None
    rows = [_stored(recording_stack.engine, i) for i in ids]
    assert [(bytes(r.data), r.attributes, r.ordering_key) for r in rows] == [
        (f"m{i}".encode(), {"seq": str(i)}, "acct_1") for i in range(3)
    ]
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)


def test_the_adapter_without_an_argument_honours_pubsub_emulator_host(
    shared: LocalStack, no_google: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", shared.pubsub_emulator_host)
    message_id = PubSubPublisher(PROJECT, CALL_TIMEOUT_S).publish("events", b"d", {"a": "1"})
    assert shared.engine is not None
    assert bytes(_stored(shared.engine, message_id).data) == b"d"


# --- the adapter with emulator_host ---------------------------------------------------------


def test_the_adapter_publishes_to_its_emulator_host_whatever_the_environment_says(
    shared: LocalStack, no_google: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The argument, not the process-wide variable, decides: here the variable names a port
    where nothing listens, as another stack's would after it stopped."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    publisher = PubSubPublisher(PROJECT, CALL_TIMEOUT_S, emulator_host=shared.pubsub_emulator_host)
    attributes = {"source": "adapter", **LIBRARY_PARAMETER_NAMES}

    one = publisher.publish("events", b"single", attributes, ordering_key="k")
    many = publisher.publish_many(
        "events", [OutboundMessage(f"{i}".encode(), {"i": str(i)}) for i in range(1500)]
    )

    assert shared.engine is not None
    row = _stored(shared.engine, one)
    assert (bytes(row.data), row.attributes, row.ordering_key) == (b"single", attributes, "k")
    assert len(set(many)) == 1500
    with shared.engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT id, data FROM emulator.messages WHERE id = ANY(:ids) ORDER BY id"),
            {"ids": [int(i) for i in many]},
        ).all()
    assert [bytes(r.data) for r in stored] == [f"{i}".encode() for i in range(1500)]
    assert [str(r.id) for r in stored] == many  # ids in the order the messages were given


def test_the_adapter_reports_an_unknown_topic_as_a_publish_error(
    shared: LocalStack, no_google: None
) -> None:
    publisher = PubSubPublisher(PROJECT, 5.0, emulator_host=shared.pubsub_emulator_host)
    before = _message_count(shared)
    with pytest.raises(PublishError, match="NotFound"):
        publisher.publish("no-such-topic", b"x", {})
    assert _message_count(shared) == before


@pytest.fixture
def gcp_settings(no_google: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HOOKYARD_ENV", "gcp")
    get_settings.cache_clear()
    get_publisher.cache_clear()
    try:
        yield
    finally:
        get_settings.cache_clear()
        get_publisher.cache_clear()


@pytest.mark.parametrize("variable", ["PUBSUB_EMULATOR_HOST", "HOOKYARD_PUBSUB_EMULATOR_HOST"])
def test_gcp_mode_publishes_to_the_emulator_the_environment_names(
    shared: LocalStack, gcp_settings: None, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, shared.pubsub_emulator_host)
    message_id = get_publisher().publish("events", variable.encode(), {"via": "settings"})
    assert shared.engine is not None
    assert bytes(_stored(shared.engine, message_id).data) == variable.encode()


def test_the_stack_records_its_emulator_host_and_forgets_it_on_stop(
    pg_server: TestServer, database: str, tmp_path: Path
) -> None:
    with running_stack(pg_server, database, tmp_path) as stack:
        record = pubsub_record_path(stack.settings.data_dir)
        assert record.read_text(encoding="utf-8").strip() == stack.pubsub_emulator_host
        host, port = stack.pubsub_emulator_host.rsplit(":", 1)
        assert host == "127.0.0.1"
        assert int(port) > 0
    assert not record.exists()
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection((host, int(port)), timeout=5),
    ):
        pass


# --- raw gRPC: every refusal has Google's status and stores nothing ------------------------


def _raw_call(
    channel: grpc.Channel, method: str, request: bytes
) -> tuple[grpc.StatusCode, bytes | str]:
    call = channel.unary_unary(f"/google.pubsub.v1.Publisher/{method}")
    try:
        return grpc.StatusCode.OK, call(request, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field, written by hand so it can carry what protobuf won't write."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _publish(*messages: types.PubsubMessage, topic: str = EVENTS) -> bytes:
    request = types.PublishRequest(topic=topic, messages=list(messages))
    return bytes(types.PublishRequest.serialize(request))


def _msg(data: bytes = b"x", **attributes: str) -> types.PubsubMessage:
    return types.PubsubMessage(data=data, attributes=attributes)


_NON_UTF8_ATTRIBUTE = _field(1, EVENTS.encode()) + _field(
    2, _field(1, b"ok") + _field(2, _field(1, b"k") + _field(2, b"\xff\xfe\xed\xa0\x80"))
)
# 200 nested groups of an unknown field: beyond protobuf's recursion limit.
_DEEP_GROUPS = _publish(_msg()) + bytes([15 << 3 | 3]) * 200 + bytes([15 << 3 | 4]) * 200

REFUSED = {
    "garbage bytes": (b"\xff\xff\xff\xff", grpc.StatusCode.INVALID_ARGUMENT),
    "non-UTF-8 attribute": (_NON_UTF8_ATTRIBUTE, grpc.StatusCode.INVALID_ARGUMENT),
    "nested deeper than protobuf allows": (_DEEP_GROUPS, grpc.StatusCode.INVALID_ARGUMENT),
    "no messages": (_publish(), grpc.StatusCode.INVALID_ARGUMENT),
    "an empty message": (_publish(_msg(), _msg(b"")), grpc.StatusCode.INVALID_ARGUMENT),
    "1,001 messages": (_publish(*[_msg()] * 1001), grpc.StatusCode.INVALID_ARGUMENT),
    "101 attributes": (
        _publish(_msg(**{f"k{i}": "v" for i in range(101)})),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "an attribute value over 1024 bytes": (
        _publish(_msg(), _msg(k="v" * 1025)),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "an attribute key over 256 bytes": (
        _publish(_msg(**{"k" * 257: "v"})),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "a goog attribute key": (_publish(_msg(googkey="v")), grpc.StatusCode.INVALID_ARGUMENT),
    "a NUL in an attribute": (_publish(_msg(k="a\x00b")), grpc.StatusCode.INVALID_ARGUMENT),
    "a NUL in the ordering key": (
        _publish(types.PubsubMessage(data=b"x", ordering_key="a\x00")),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "a message over 10 MB": (
        _publish(_msg(b"x" * (10_000_000 + 1))),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "a request over 10 MiB": (
        _publish(_msg(b"x" * 6_000_000), _msg(b"y" * 5_000_000)),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "a request larger than the server receives": (
        _publish(_msg(b"x" * 8_000_000), _msg(b"y" * 4_000_000)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ),
    "a malformed topic name": (_publish(_msg(), topic="events"), grpc.StatusCode.INVALID_ARGUMENT),
    "an empty topic name": (_publish(_msg(), topic=""), grpc.StatusCode.INVALID_ARGUMENT),
    "a topic name too short": (
        _publish(_msg(), topic=f"projects/{PROJECT}/topics/ab"),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "a goog topic name": (
        _publish(_msg(), topic=f"projects/{PROJECT}/topics/goog-events"),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "a non-ASCII topic name": (
        _publish(_msg(), topic=f"projects/{PROJECT}/topics/\u00e9vents"),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "an unknown topic": (
        _publish(_msg(), topic=f"projects/{PROJECT}/topics/nope"),
        grpc.StatusCode.NOT_FOUND,
    ),
    "another project's topic": (
        _publish(_msg(), topic="projects/other-project/topics/events"),
        grpc.StatusCode.NOT_FOUND,
    ),
}


def test_the_size_cases_straddle_the_limits() -> None:
    within, over = REFUSED["a request over 10 MiB"][0], REFUSED["a message over 10 MB"][0]
    assert MAX_REQUEST_BYTES < len(within) <= MAX_RECEIVE_BYTES
    assert len(over) <= MAX_REQUEST_BYTES
    assert len(REFUSED["a request larger than the server receives"][0]) > MAX_RECEIVE_BYTES


@pytest.mark.parametrize(("request_bytes", "expected"), REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_publish_has_googles_status_and_stores_nothing(
    shared: LocalStack, channel: grpc.Channel, request_bytes: bytes, expected: grpc.StatusCode
) -> None:
    before = _message_count(shared)
    code, _ = _raw_call(channel, "Publish", request_bytes)
    assert code == expected
    assert _message_count(shared) == before


def test_a_publish_at_every_limit_exactly_is_accepted(
    shared: LocalStack, channel: grpc.Channel
) -> None:
    """100 attributes of 256-byte keys and 1,024-byte values, a 1,024-byte ordering key."""
    attributes = {f"{i:03d}" + "k" * 253: "v" * 1024 for i in range(100)}
    message = types.PubsubMessage(data=b"x", attributes=attributes, ordering_key="k" * 1024)
    code, raw = _raw_call(channel, "Publish", _publish(message))
    assert code == grpc.StatusCode.OK
    assert isinstance(raw, bytes)
    (message_id,) = types.PublishResponse.deserialize(raw).message_ids
    assert shared.engine is not None
    assert len(_stored(shared.engine, message_id).attributes) == 100


def test_unknown_topic_says_topic_not_found(channel: grpc.Channel) -> None:
    code, details = _raw_call(
        channel, "Publish", _publish(_msg(), topic=f"projects/{PROJECT}/topics/nope")
    )
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "Topic not found")


def test_a_valid_raw_publish_stores_every_message_in_order(
    shared: LocalStack, channel: grpc.Channel
) -> None:
    """Unknown fields are skipped, as protobuf readers do."""
    request = _publish(_msg(b"a", n="1"), _msg(b"b", n="2")) + _field(15, _field(15, b"z"))
    code, raw = _raw_call(channel, "Publish", request)
    assert code == grpc.StatusCode.OK
    assert isinstance(raw, bytes)
    ids = list(types.PublishResponse.deserialize(raw).message_ids)
    assert shared.engine is not None
    stored = [_stored(shared.engine, i) for i in ids]
    assert [(bytes(r.data), r.attributes) for r in stored] == [
        (b"a", {"n": "1"}),
        (b"b", {"n": "2"}),
    ]


@pytest.mark.parametrize(
    "method", ["CreateTopic", "DeleteTopic", "UpdateTopic", "DetachSubscription"]
)
def test_other_publisher_methods_are_unimplemented(channel: grpc.Channel, method: str) -> None:
    request = bytes(types.Topic.serialize(types.Topic(name=EVENTS)))
    assert _raw_call(channel, method, request)[0] == grpc.StatusCode.UNIMPLEMENTED


# --- topic lookup -----------------------------------------------------------------------------


@pytest.fixture
def client(shared: LocalStack, no_google: None, monkeypatch: pytest.MonkeyPatch) -> PublisherClient:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", shared.pubsub_emulator_host)
    return PublisherClient()


def test_get_topic_answers_for_the_topology_s_topics(client: PublisherClient) -> None:
    assert client.get_topic(topic=EVENTS, timeout=CALL_TIMEOUT_S).name == EVENTS
    with pytest.raises(exceptions.NotFound):
        client.get_topic(topic=f"projects/{PROJECT}/topics/nope", timeout=CALL_TIMEOUT_S)
    with pytest.raises(exceptions.InvalidArgument):
        client.get_topic(topic="events", timeout=CALL_TIMEOUT_S)


def test_list_topics_pages_through_the_topology(client: PublisherClient) -> None:
    expected = sorted(f"projects/{PROJECT}/topics/{t.name}" for t in get_topology().topics)
    pager = client.list_topics(
        request={"project": f"projects/{PROJECT}", "page_size": 1}, timeout=CALL_TIMEOUT_S
    )
    pages = list(pager.pages)
    assert [t.name for page in pages for t in page.topics] == expected
    assert len(pages) == len(expected)
    others = client.list_topics(project="projects/other-project", timeout=CALL_TIMEOUT_S)
    assert list(others) == []


def test_list_topic_subscriptions_names_the_topics_subscriptions(client: PublisherClient) -> None:
    names = list(client.list_topic_subscriptions(topic=EVENTS, timeout=CALL_TIMEOUT_S))
    assert sorted(names) == sorted(
        f"projects/{PROJECT}/subscriptions/{s.name}"
        for s in get_topology().subscriptions_of("events")
    )


# --- the server on its own: storage down, peers, ports ----------------------------------------


@pytest.fixture
def unreachable_broker() -> Iterator[Broker]:
    engine = sa.create_engine(
        f"postgresql+pg8000://nobody:nothing@127.0.0.1:{free_port()}/none", poolclass=sa.NullPool
    )
    try:
        yield Broker(engine, get_topology(), "http://127.0.0.1:9", project=PROJECT)
    finally:
        engine.dispose()


def test_a_database_that_cannot_be_reached_is_unavailable(unreachable_broker: Broker) -> None:
    server = PubSubGrpcServer(unreachable_broker)
    server.start()
    try:
        with grpc.insecure_channel(server.address) as opened:
            code, _ = _raw_call(opened, "Publish", _publish(_msg()))
        assert code == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()
        server.stop()  # idempotent


def test_a_port_in_use_is_refused_not_shared(unreachable_broker: Broker) -> None:
    """grpc would share a port by default (SO_REUSEPORT): two stacks on 8085 would split
    one client's publishes between them."""
    first = PubSubGrpcServer(unreachable_broker)
    port = first.start()
    try:
        with pytest.raises(ConfigError, match="HOOKYARD_PUBSUB_PORT"):
            PubSubGrpcServer(unreachable_broker, port=port).start()
    finally:
        first.stop()


def _non_loopback_address() -> str | None:
    """This machine's address on its default route, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_a_peer_that_is_not_loopback_is_refused(unreachable_broker: Broker) -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    server = PubSubGrpcServer(unreachable_broker, host=address)
    port = server.start()
    try:
        with grpc.insecure_channel(f"{address}:{port}") as opened:
            code, _ = _raw_call(opened, "Publish", _publish(_msg()))
        assert code == grpc.StatusCode.PERMISSION_DENIED
    finally:
        server.stop()
