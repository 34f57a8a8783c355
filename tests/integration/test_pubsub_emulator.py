"""The Pub/Sub adapter against Google's own Pub/Sub emulator (`gcloud beta emulators pubsub`),
not a fake of ours: what it publishes is pulled back with the client library's
`SubscriberClient`, attributes named like the handwritten client's parameters included.

Skipped, with the reason, where `gcloud` is not installed. The emulator runs in its own
process group, which is stopped at the end whatever happened.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.messaging.pubsub import PubSubPublisher
from tests.support.pubsub_emulator import google_pubsub_emulator

pytestmark = pytest.mark.timeout(300)

PROJECT = "hookyard-emulated"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[str]:
    with google_pubsub_emulator(tmp_path) as host:
        yield host


def test_attributes_with_parameter_names_reach_googles_emulator(
    emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator)
    admin = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = admin.topic_path(PROJECT, "events")
    subscription = subscriber.subscription_path(PROJECT, "ledger")
    publisher = PubSubPublisher(PROJECT, timeout_s=60.0)
    try:
        admin.create_topic(name=topic)
        subscriber.create_subscription(
            request={"name": subscription, "topic": topic, "enable_message_ordering": True}
        )
        attributes = {
            "source": "stripe", "timeout": "30", "retry": "never",
            "ordering_key": "not-the-key", "topic": "t", "data": "d",
        }  # fmt: skip
        data = b'{"id":"evt_1"}\x00\xff'

        message_id = publisher.publish("events", data, attributes, ordering_key="cus_42")

        received = []
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline:
            pulled = subscriber.pull(
                request={"subscription": subscription, "max_messages": 10}, timeout=60
            )
            received.extend(pulled.received_messages)
        subscriber.acknowledge(
            request={"subscription": subscription, "ack_ids": [m.ack_id for m in received]}
        )
    finally:
        subscriber.close()
        admin.transport.close()
        if (client := publisher._client.built) is not None:
            client.transport.close()

    [delivered] = received
    assert delivered.message.message_id == message_id
    assert delivered.message.data == data
    assert dict(delivered.message.attributes) == attributes
    assert delivered.message.ordering_key == "cus_42"
