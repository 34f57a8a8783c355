"""The Pub/Sub adapter against Google's own Pub/Sub emulator (`gcloud beta emulators pubsub`),
not a fake of ours: what it publishes is pulled back with the client library's
`SubscriberClient`, attributes named like the handwritten client's parameters included.

Skipped, with the reason, where `gcloud` is not installed. The emulator runs in its own
process group, which is stopped at the end whatever happened.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.messaging.pubsub import PubSubPublisher
from tests.support.stack import free_port

pytestmark = pytest.mark.timeout(300)

PROJECT = "hookyard-emulated"
START_BOUND_S = 120.0  # a cold JVM on a busy machine; only a broken install reaches it


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[str]:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip("gcloud is not on PATH: Google's Pub/Sub emulator is not installed here")
    port = free_port()
    (tmp_path / "data").mkdir()
    log_path = tmp_path / "emulator.log"
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [gcloud, "beta", "emulators", "pubsub", "start",
             f"--host-port=127.0.0.1:{port}", f"--data-dir={tmp_path / 'data'}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_BOUND_S
        while not _accepts(port):
            if process.poll() is not None:
                pytest.fail(f"the emulator exited ({process.returncode}): {log_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the emulator did not listen within {START_BOUND_S}s")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        _stop_group(process)
        assert not _accepts(port), "the emulator is still listening"


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """gcloud's wrapper and the JVM it starts share the process group we created."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            continue
        # The wrapper is gone; the JVM may still be winding down in the group.
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(1)


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
