"""The Google Cloud adapters against the real client libraries and in-process gRPC fakes.

Nothing here mocks a client: `PubSubPublisher` builds its own `PublisherClient` (the
emulator path, `PUBSUB_EMULATOR_HOST`) and `SecretManagerStore` gets a real
`SecretManagerServiceClient` over an insecure channel. The fakes in `tests.support.grpc_fakes`
speak the services' wire protocol and record what arrived.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.api_core import retry as retries
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import pubsub_v1
from google.cloud.secretmanager_v1 import SecretManagerServiceClient
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcTransport,
)

from common.errors import PublishError, SecretUnavailable
from common.messaging.pubsub import PubSubPublisher
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
from tests.support.stack import wait_for

# Every call here takes well under a second; a regression that waits on an infinite retry
# fails on this bound instead of hanging the suite, and a busy machine never reaches it.
pytestmark = pytest.mark.timeout(120)

PROJECT = "hookyard-test"
# The deadline of a publish whose timing is not under test: only a hang reaches it.
GENEROUS_S = 60.0
# Longer than the test may run: a publish that waited for it fails on the test's timeout,
# which is how "at once" is checked without timing anything.
UNREACHABLE_S = 3600.0
COMMIT_THREAD = "Thread-CommitBatchPublisher"  # google.cloud.pubsub_v1.publisher._batch.thread

# ---------------------------------------------------------------------------------------------
# Pub/Sub
# ---------------------------------------------------------------------------------------------


class PublisherFactory(Protocol):
    def __call__(self, timeout_s: float, client: Any = None) -> PubSubPublisher: ...


@pytest.fixture
def pubsub() -> Iterator[FakePublisher]:
    with fake_publisher() as fake:
        yield fake


@pytest.fixture
def make_publisher(
    pubsub: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PublisherFactory]:
    """Publishers against the fake. Without `client` they build their own, as in production."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub.address)
    made: list[PubSubPublisher] = []

    def make(timeout_s: float, client: Any = None) -> PubSubPublisher:
        publisher = PubSubPublisher(PROJECT, timeout_s=timeout_s, client=client)
        made.append(publisher)
        return publisher

    yield make
    # A batch whose answer the server has sent may not have been read by the client yet:
    # let every commit finish before closing the channel, or its retry loop would die on
    # the closed channel in a background thread.
    _join_commit_threads(timeout_s=GENEROUS_S)
    clients = {id(c): c for p in made if (c := p._client.built) is not None}
    for client in clients.values():  # publishers may share one
        client.stop()
        client.transport.close()


def _join_commit_threads(timeout_s: float) -> None:
    """Wait for the Pub/Sub client's batch commits (one thread each) to end."""
    deadline = time.monotonic() + timeout_s
    for thread in threading.enumerate():
        if thread.name == COMMIT_THREAD:
            thread.join(max(0.0, deadline - time.monotonic()))
    pending = [t for t in threading.enumerate() if t.name == COMMIT_THREAD]
    assert not pending, "a publish was still in flight when the test ended"


def fast_retry_client() -> pubsub_v1.PublisherClient:
    """The production client settings, but retrying every 20-50 ms instead of backing off
    towards a minute, so a test can let a retried message land without waiting long."""
    return pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(
            enable_message_ordering=True,
            retry=retries.Retry(
                initial=0.02,
                maximum=0.05,
                multiplier=2.0,
                predicate=retries.if_exception_type(gexc.ServiceUnavailable),
            ),
        ),
        batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.0),
    )


def test_publish_sends_topic_data_attributes_and_ordering_key(
    pubsub: FakePublisher, make_publisher: PublisherFactory
) -> None:
    publisher = make_publisher(GENEROUS_S)
    data = b'{"id":"evt_1"}\x00\xff\n'  # not valid UTF-8: bytes must arrive untouched
    attributes = {"source": "stripe", "event_type": "invoice.paid", "hookyard_attempt": "1"}

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
    assert dict(sent.attributes) == attributes
    assert sent.ordering_key == "cus_42"
    assert unordered.data == b"plain"
    assert dict(unordered.attributes) == {"source": "standard"}
    assert unordered.ordering_key == ""


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

    assert publisher.publish("ingest", b"x", {}) == "msg-1"
    assert pubsub.calls == 3
    assert len(pubsub.published()) == 1


def test_persistent_unavailable_is_a_publish_error_after_the_timeout(
    pubsub: FakePublisher, make_publisher: PublisherFactory
) -> None:
    timeout_s = 0.5
    publisher = make_publisher(timeout_s, client=fast_retry_client())
    pubsub.script(*[Fail(grpc.StatusCode.UNAVAILABLE)] * 10_000)

    started = time.monotonic()
    with pytest.raises(PublishError) as info:
        publisher.publish("ingest", b"x", {})
    elapsed = time.monotonic() - started

    assert isinstance(info.value.__cause__, TimeoutError)
    assert elapsed >= timeout_s  # it kept waiting until the deadline, not less
    assert pubsub.published() == []
    # Giving up does not cancel the message: the client keeps retrying it, and it lands once
    # the service is back (at-least-once; consumers dedup).
    wait_for(lambda: pubsub.calls >= 3)
    pubsub.clear_script()
    assert [m.data for m in pubsub.wait_published(1, timeout_s=GENEROUS_S)] == [b"x"]


def test_server_slower_than_the_timeout_is_a_publish_error(
    pubsub: FakePublisher, make_publisher: PublisherFactory
) -> None:
    timeout_s = 0.5
    publisher = make_publisher(timeout_s)
    pubsub.script(Hold())

    started = time.monotonic()
    with pytest.raises(PublishError) as info:
        publisher.publish("ingest", b"x", {})
    elapsed = time.monotonic() - started

    assert isinstance(info.value.__cause__, TimeoutError)
    assert elapsed >= timeout_s
    assert pubsub.published() == []  # held: the adapter gave up without the answer
    pubsub.release()
    assert [m.data for m in pubsub.wait_published(1, timeout_s=GENEROUS_S)] == [b"x"]


def test_slow_ordered_publish_is_a_publish_error_and_the_key_keeps_working(
    pubsub: FakePublisher, make_publisher: PublisherFactory
) -> None:
    # The adapter times out while the batch is still in flight, so the ordering key was
    # never paused: the timeout must still surface as PublishError, not as whatever the
    # client says about resuming a key that is not paused. Two adapters share one client
    # (the ordering key's state lives there): a hasty one that gives up, a patient one.
    client = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
        batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.0),
    )
    hasty = make_publisher(0.5, client=client)
    patient = make_publisher(GENEROUS_S, client=client)
    pubsub.script(Hold())

    with pytest.raises(PublishError):
        hasty.publish("ingest", b"slow", {}, ordering_key="cus_42")
    # The slow message is still in flight; the next one on the key queues behind it, and
    # goes once the first is answered.
    answer = threading.Timer(0.2, pubsub.release)
    answer.start()
    try:
        assert patient.publish("ingest", b"next", {}, ordering_key="cus_42") == "msg-2"
    finally:
        answer.join()

    assert [m.data for m in pubsub.published()] == [b"slow", b"next"]
    assert {m.ordering_key for m in pubsub.published()} == {"cus_42"}


def test_ordering_key_is_resumed_after_a_failure(
    pubsub: FakePublisher, make_publisher: PublisherFactory
) -> None:
    publisher = make_publisher(GENEROUS_S)
    pubsub.script(Fail(grpc.StatusCode.FAILED_PRECONDITION))

    with pytest.raises(PublishError):
        publisher.publish("ingest", b"first", {"n": "1"}, ordering_key="cus_42")
    # Without resume_publish the client would refuse every later message on this key.
    assert publisher.publish("ingest", b"second", {"n": "2"}, ordering_key="cus_42") == "msg-1"
    assert publisher.publish("ingest", b"third", {"n": "3"}, ordering_key="cus_42") == "msg-2"

    assert pubsub.calls == 3
    assert [m.data for m in pubsub.published()] == [b"second", b"third"]


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
