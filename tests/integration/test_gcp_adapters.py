"""The Google Cloud adapters against the real client libraries and in-process gRPC fakes.

Nothing here mocks a client: `PubSubPublisher` builds its own `PublisherClient` (the
emulator path, `PUBSUB_EMULATOR_HOST`) and `SecretManagerStore` gets a real
`SecretManagerServiceClient` over an insecure channel. The fakes in `tests.support.grpc_fakes`
speak the services' wire protocol and record what arrived.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.auth.exceptions import DefaultCredentialsError
from google.cloud.secretmanager_v1 import SecretManagerServiceClient
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcTransport,
)

from common.errors import PublishError, SecretUnavailable
from common.messaging.publisher import OutboundMessage
from common.messaging.pubsub import MAX_REQUEST_MESSAGES, PubSubPublisher
from common.secrets import SecretManagerStore
from tests.support.google_credentials import without_google_credentials
from tests.support.grpc_fakes import (
    Fail,
    FakePublisher,
    FakeSecretManager,
    Hold,
    crc32c,
    fake_publisher,
    fake_secret_manager,
)

# Every call here takes well under a second; a regression that waits on an infinite retry
# fails on this bound instead of hanging the suite, and a busy machine never reaches it.
pytestmark = pytest.mark.timeout(120)

PROJECT = "hookyard-test"
# The deadline of a publish whose timing is not under test: only a hang reaches it.
GENEROUS_S = 60.0
# Longer than the test may run: a publish that waited for it fails on the test's timeout,
# which is how "at once" is checked without timing anything.
UNREACHABLE_S = 3600.0
# Attribute names that are also parameters of the handwritten `PublisherClient.publish`:
# passed as keyword arguments, `timeout` vanished into the call and the others raised.
CLASHING = {
    "timeout": "30",
    "retry": "never",
    "ordering_key": "not-the-key",
    "topic": "t",
    "data": "d",
    "self": "s",
    "attrs": "a",
}

# ---------------------------------------------------------------------------------------------
# Pub/Sub
# ---------------------------------------------------------------------------------------------


class PublisherFactory(Protocol):
    def __call__(self, timeout_s: float) -> PubSubPublisher: ...


@pytest.fixture
def pubsub() -> Iterator[FakePublisher]:
    with fake_publisher() as fake:
        yield fake


@pytest.fixture
def make_publisher(
    pubsub: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PublisherFactory]:
    """Publishers against the fake that build their own client, as in production."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub.address)
    made: list[PubSubPublisher] = []

    def make(timeout_s: float) -> PubSubPublisher:
        publisher = PubSubPublisher(PROJECT, timeout_s=timeout_s)
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        if (client := publisher._client.built) is not None:
            client.transport.close()


def test_publish_sends_topic_data_attributes_and_ordering_key(
    pubsub: FakePublisher, make_publisher: PublisherFactory
) -> None:
    publisher = make_publisher(GENEROUS_S)
    data = b'{"id":"evt_1"}\x00\xff\n'  # not valid UTF-8: bytes must arrive untouched
    attributes = {"source": "stripe", "event_type": "invoice.paid", **CLASHING}

    first = publisher.publish("ingest", data, attributes, ordering_key="cus_42")
    second = publisher.publish("ingest-dlq", b"plain", {"source": "standard"})

    assert (first, second) == ("msg-1", "msg-2")  # the ids the server assigned, in order
    assert [r.topic for r in pubsub.requests] == [
        f"projects/{PROJECT}/topics/ingest",
        f"projects/{PROJECT}/topics/ingest-dlq",
    ]
    # Ingest publishes one message per request and waits for it.
    assert [len(r.messages) for r in pubsub.requests] == [1, 1]
    sent, unordered = pubsub.published()
    assert sent.data == data
    assert dict(sent.attributes) == attributes  # every name, `timeout` and `retry` included
    assert sent.ordering_key == "cus_42"  # the argument, not the attribute of that name
    assert unordered.data == b"plain"
    assert dict(unordered.attributes) == {"source": "standard"}
    assert unordered.ordering_key == ""


def test_publish_many_splits_at_pubsubs_request_limits_and_keeps_order(
    pubsub: FakePublisher, make_publisher: PublisherFactory
) -> None:
    publisher = make_publisher(GENEROUS_S)
    many = [
        OutboundMessage(f"m{i}".encode(), {"n": str(i), "timeout": "1"}, "k" if i % 2 else "")
        for i in range(MAX_REQUEST_MESSAGES * 2 + 1)
    ]
    big = [OutboundMessage(bytes([i]) * 4_000_000, {"n": str(i)}) for i in range(3)]

    ids = publisher.publish_many("ingest", many)
    big_ids = publisher.publish_many("replays", big)

    assert ids == [f"msg-{i}" for i in range(1, len(many) + 1)]
    assert big_ids == [f"msg-{len(many) + i}" for i in range(1, 4)]
    # 1,000 messages or 10 MB per request: Pub/Sub refuses more.
    assert [len(r.messages) for r in pubsub.requests] == [1000, 1000, 1, 2, 1]
    received = pubsub.published()
    assert [(m.data, dict(m.attributes), m.ordering_key) for m in received[: len(many)]] == [
        (m.data, dict(m.attributes), m.ordering_key) for m in many
    ]
    assert [m.data for m in received[len(many) :]] == [m.data for m in big]


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
    ],
)
@pytest.mark.parametrize("ordering_key", ["", "cus_42"])
def test_non_retryable_error_is_a_publish_error_at_once(
    pubsub: FakePublisher,
    make_publisher: PublisherFactory,
    code: grpc.StatusCode,
    ordering_key: str,
) -> None:
    publisher = make_publisher(UNREACHABLE_S)  # waiting for the deadline would time out
    pubsub.script(Fail(code))

    with pytest.raises(PublishError, match="publish to ingest failed") as info:
        publisher.publish("ingest", b"x", {}, ordering_key=ordering_key)

    cause = info.value.__cause__
    assert isinstance(cause, gexc.GoogleAPICallError)
    assert cause.grpc_status_code == code
    assert pubsub.calls == 1  # not retried


def test_transient_unavailable_is_retried_within_the_deadline(
    pubsub: FakePublisher, make_publisher: PublisherFactory
) -> None:
    publisher = make_publisher(GENEROUS_S)
    pubsub.script(Fail(grpc.StatusCode.UNAVAILABLE), Fail(grpc.StatusCode.UNAVAILABLE))

    assert publisher.publish("ingest", b"x", {"retry": "3"}) == "msg-1"
    assert pubsub.calls == 3
    [message] = pubsub.published()
    assert dict(message.attributes) == {"retry": "3"}


def test_persistent_unavailable_is_a_publish_error_after_the_timeout(
    pubsub: FakePublisher, make_publisher: PublisherFactory
) -> None:
    timeout_s = 1.0
    publisher = make_publisher(timeout_s)
    pubsub.script(*[Fail(grpc.StatusCode.UNAVAILABLE)] * 10_000)

    started = time.monotonic()
    with pytest.raises(PublishError) as info:
        publisher.publish("ingest", b"x", {})
    elapsed = time.monotonic() - started

    assert isinstance(info.value.__cause__, gexc.ServiceUnavailable)
    assert elapsed >= timeout_s * 0.5  # it kept retrying towards the deadline
    assert pubsub.calls >= 2
    assert pubsub.published() == []


@pytest.mark.parametrize("ordering_key", ["", "cus_42"])
def test_server_slower_than_the_timeout_is_a_publish_error(
    pubsub: FakePublisher, make_publisher: PublisherFactory, ordering_key: str
) -> None:
    timeout_s = 0.5
    publisher = make_publisher(timeout_s)
    pubsub.script(Hold())

    started = time.monotonic()
    with pytest.raises(PublishError) as info:
        publisher.publish("ingest", b"slow", {}, ordering_key=ordering_key)
    elapsed = time.monotonic() - started

    assert isinstance(info.value.__cause__, gexc.DeadlineExceeded)
    assert elapsed >= timeout_s * 0.9  # the deadline runs from before the call is sent
    assert pubsub.published() == []  # held: the adapter gave up without the answer
    pubsub.release()
    # The key is not stuck behind the message that timed out.
    patient = make_publisher(GENEROUS_S)
    assert patient.publish("ingest", b"next", {}, ordering_key=ordering_key).startswith("msg-")
    assert b"next" in [m.data for m in pubsub.wait_published(2, timeout_s=GENEROUS_S)]


def test_ordering_key_keeps_working_after_a_failure(
    pubsub: FakePublisher, make_publisher: PublisherFactory
) -> None:
    publisher = make_publisher(GENEROUS_S)
    pubsub.script(Fail(grpc.StatusCode.FAILED_PRECONDITION))

    with pytest.raises(PublishError):
        publisher.publish("ingest", b"first", {"n": "1"}, ordering_key="cus_42")
    assert publisher.publish("ingest", b"second", {"n": "2"}, ordering_key="cus_42") == "msg-1"
    assert publisher.publish("ingest", b"third", {"n": "3"}, ordering_key="cus_42") == "msg-2"

    assert pubsub.calls == 3
    assert [m.data for m in pubsub.published()] == [b"second", b"third"]


def test_no_credentials_is_a_publish_error_and_the_publisher_recovers(
    pubsub: FakePublisher, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Building the client looks up credentials: without any, that is a PublishError (a 503
    at ingest), and the next publish tries again instead of keeping a broken client."""
    without_google_credentials(monkeypatch, tmp_path / "home")
    publisher = PubSubPublisher(PROJECT, timeout_s=GENEROUS_S)

    with pytest.raises(PublishError, match="publish to ingest failed") as info:
        publisher.publish("ingest", b"x", {"timeout": "5"})
    assert isinstance(info.value.__cause__, DefaultCredentialsError)
    assert pubsub.calls == 0

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub.address)  # now it can reach a server
    try:
        assert publisher.publish("ingest", b"x", {"timeout": "5"}) == "msg-1"
    finally:
        if (client := publisher._client.built) is not None:
            client.transport.close()
    [message] = pubsub.published()
    assert dict(message.attributes) == {"timeout": "5"}


# ---------------------------------------------------------------------------------------------
# Secret Manager
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def secrets() -> Iterator[FakeSecretManager]:
    with fake_secret_manager() as fake:
        yield fake


@pytest.fixture
def sm_client(secrets: FakeSecretManager) -> Iterator[SecretManagerServiceClient]:
    channel = grpc.insecure_channel(secrets.address)
    client = SecretManagerServiceClient(
        transport=SecretManagerServiceGrpcTransport(channel=channel)
    )
    try:
        yield client
    finally:
        client.transport.close()


def _store(
    client: SecretManagerServiceClient,
    ttl_s: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
) -> SecretManagerStore:
    return SecretManagerStore(PROJECT, ttl_s=ttl_s, client_factory=lambda: client, clock=clock)


def test_fake_checksum_is_crc32c() -> None:
    # The fake's checksum is computed independently of the adapter's; pin it to the
    # published CRC-32C check value so the two cannot agree on a wrong algorithm.
    assert crc32c(b"123456789") == 0xE3069283


def test_secret_values_are_split_by_line(
    secrets: FakeSecretManager, sm_client: SecretManagerServiceClient
) -> None:
    # Sent with a correct data_crc32c over the UTF-8 bytes, so the adapter's check must pass.
    raw = "  It's a Secret to Everybody \n\nwhsec_new\n  pässwörd-ünïcode\n\n"
    secrets.put(PROJECT, "webhook-secret-stripe", raw.encode())

    values = _store(sm_client).values("webhook-secret-stripe")

    assert values == ("It's a Secret to Everybody", "whsec_new", "pässwörd-ünïcode")
    assert secrets.requested == [
        f"projects/{PROJECT}/secrets/webhook-secret-stripe/versions/latest"
    ]


def test_secret_without_checksum_is_accepted(
    secrets: FakeSecretManager, sm_client: SecretManagerServiceClient
) -> None:
    secrets.put(PROJECT, "admin-token", b"token-1\r\ntoken-2", with_checksum=False)

    assert _store(sm_client).values("admin-token") == ("token-1", "token-2")


def test_checksum_mismatch_is_an_unavailable_secret(
    secrets: FakeSecretManager, sm_client: SecretManagerServiceClient
) -> None:
    secrets.put(PROJECT, "admin-token", b"token-1\n", checksum=1234)

    with pytest.raises(SecretUnavailable, match="admin-token: payload checksum mismatch") as info:
        _store(sm_client).values("admin-token")
    assert "token-1" not in str(info.value)
    assert secrets.calls == 1


def test_missing_secret_is_empty(
    secrets: FakeSecretManager, sm_client: SecretManagerServiceClient
) -> None:
    secrets.put(PROJECT, "other", b"value")

    assert _store(sm_client).values("webhook-secret-github") == ()
    assert secrets.requested == [
        f"projects/{PROJECT}/secrets/webhook-secret-github/versions/latest"
    ]


def test_permission_denied_is_not_mistaken_for_a_missing_secret(
    secrets: FakeSecretManager, sm_client: SecretManagerServiceClient
) -> None:
    secrets.put(PROJECT, "admin-token", b"token-1")
    secrets.script(Fail(grpc.StatusCode.PERMISSION_DENIED))

    with pytest.raises(SecretUnavailable, match="admin-token: PermissionDenied") as info:
        _store(sm_client).values("admin-token")
    assert isinstance(info.value.__cause__, gexc.PermissionDenied)


def test_values_are_cached_for_the_ttl(
    secrets: FakeSecretManager, sm_client: SecretManagerServiceClient
) -> None:
    now = [1000.0]
    store = _store(sm_client, ttl_s=60.0, clock=lambda: now[0])
    secrets.put(PROJECT, "admin-token", b"old")

    assert store.values("admin-token") == ("old",)
    assert secrets.calls == 1

    secrets.put(PROJECT, "admin-token", b"new\nold")  # rotated on the server
    now[0] += 59.0
    assert store.values("admin-token") == ("old",)  # still cached: no call
    assert secrets.calls == 1

    now[0] += 1.0  # exactly the TTL after the fetch
    assert store.values("admin-token") == ("new", "old")
    assert secrets.calls == 2

    now[0] += 30.0  # within the TTL of the refetch
    assert store.values("admin-token") == ("new", "old")
    assert secrets.calls == 2


def test_cache_is_per_secret(
    secrets: FakeSecretManager, sm_client: SecretManagerServiceClient
) -> None:
    now = [0.0]
    store = _store(sm_client, ttl_s=60.0, clock=lambda: now[0])
    secrets.put(PROJECT, "a", b"value-a")
    secrets.put(PROJECT, "b", b"value-b")

    assert store.values("a") == ("value-a",)
    assert store.values("b") == ("value-b",)
    assert store.values("a") == ("value-a",)
    assert secrets.requested == [
        f"projects/{PROJECT}/secrets/a/versions/latest",
        f"projects/{PROJECT}/secrets/b/versions/latest",
    ]


def test_a_failed_read_is_not_cached(
    secrets: FakeSecretManager, sm_client: SecretManagerServiceClient
) -> None:
    store = _store(sm_client, ttl_s=3600.0)
    secrets.put(PROJECT, "admin-token", b"token-1")
    secrets.script(Fail(grpc.StatusCode.INTERNAL))

    with pytest.raises(SecretUnavailable):
        store.values("admin-token")
    assert store.values("admin-token") == ("token-1",)  # asked again, not "empty" or stale
    assert secrets.calls == 2


def test_unreachable_secret_manager_is_unavailable_within_the_deadline(
    secrets: FakeSecretManager, sm_client: SecretManagerServiceClient
) -> None:
    secrets.put(PROJECT, "admin-token", b"token-1")
    secrets.script(*[Fail(grpc.StatusCode.UNAVAILABLE)] * 10_000)
    store = SecretManagerStore(PROJECT, ttl_s=60.0, client_factory=lambda: sm_client, timeout_s=1.0)

    with pytest.raises(SecretUnavailable, match="admin-token"):
        store.values("admin-token")
    assert secrets.calls >= 2  # retried as Google retries it, then gave up


def test_no_credentials_is_an_unavailable_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The store builds Google's client on first use; without credentials that is a failure
    to read, never "no secret configured"."""
    without_google_credentials(monkeypatch, tmp_path / "home")
    store = SecretManagerStore(PROJECT, ttl_s=60.0)

    with pytest.raises(SecretUnavailable, match="webhook-secret-stripe") as info:
        store.values("webhook-secret-stripe")
    assert isinstance(info.value.__cause__, DefaultCredentialsError)
