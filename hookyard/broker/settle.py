"""What one push attempt means for its delivery: ack, retry later, or dead-letter.

Acks are settled many at once (`acks`); failures one at a time (`failure`), each in its own
transaction, which also holds the dead-letter copy. A lease that ran out is judged exactly
like a nack: Pub/Sub counts ack-deadline expiries as delivery attempts, and a crashed broker
must not grant a message extra tries. For a subscription without a retry policy a nack also
pauses the whole subscription (`backoff`), and an ack ends that streak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Literal

from sqlalchemy.engine import Connection

from common.topology import Subscription, Topology
from hookyard.broker import store
from hookyard.broker.backoff import PushBackoff, redelivery_delay
from hookyard.broker.routing import Routes
from hookyard.broker.store import Delivery, NewMessage

# 102 can only count when the endpoint's HTTP stack makes it a final response; HTTP/1.1
# clients (httpx included) treat it as informational and keep waiting.
ACK_STATUSES = frozenset({102, 200, 201, 202, 204})

Outcome = Literal["acked", "retry", "dead-lettered", "stale"]


@dataclass(frozen=True, slots=True)
class PushResult:
    status: int | None
    error: str | None = None

    @property
    def acked(self) -> bool:
        return self.error is None and self.status in ACK_STATUSES


@dataclass(frozen=True, slots=True)
class Ack:
    """A push the endpoint acknowledged, for the claim `delivery` was pushed under."""

    delivery: Delivery
    status: int


class Settler:
    """Settles deliveries of one topology; dead-letter copies are attributed to `project`."""

    def __init__(
        self, topology: Topology, project: str, push_backoff: PushBackoff | None = None
    ) -> None:
        self._topology = topology
        self._routes = Routes(topology)
        self._project = project
        self._push_backoff = push_backoff or PushBackoff()
        self._without_retry_policy = sorted(
            sub.name for sub in topology.subscriptions if sub.retry_policy is None
        )

    def acks(self, conn: Connection, acks: Sequence[Ack]) -> list[Outcome]:
        """One statement for the whole batch; an ack whose lease ran out is "stale"."""
        settled = store.mark_acked(
            conn, [(ack.delivery, ack.status) for ack in acks], self._without_retry_policy
        )
        return ["acked" if _claim(ack.delivery) in settled else "stale" for ack in acks]

    def failure(
        self, conn: Connection, delivery: Delivery, status: int | None, error: str
    ) -> Outcome:
        """One transaction: the dead-letter copy exists if and only if the source is dead."""
        subscription = self._subscription(delivery)
        attempts = delivery.attempts + 1
        policy = subscription.dead_letter_policy
        if policy is not None and attempts >= policy.max_delivery_attempts:
            if not store.mark_dead(conn, delivery, status, error):
                return "stale"
            copy = _dead_letter_copy(delivery, attempts, self._project)
            topic = policy.dead_letter_topic
            store.publish(conn, topic, [(copy, self._routes.subscribers(topic, copy.attributes))])
            outcome: Outcome = "dead-lettered"
        else:
            delay = redelivery_delay(subscription.retry_policy, attempts)
            if not store.mark_retry(conn, delivery, delay, status, error):
                return "stale"
            outcome = "retry"
        if subscription.retry_policy is None:
            store.pause_after_nack(conn, subscription.name, self._push_backoff.pause_s)
        return outcome

    def _subscription(self, delivery: Delivery) -> Subscription:
        subscription = self._topology.subscription(delivery.subscription)
        if subscription is None:
            raise LookupError(f"subscription {delivery.subscription!r} is not in the topology")
        return subscription


def _claim(delivery: Delivery) -> tuple[str, int, int]:
    return delivery.subscription, delivery.message_id, delivery.attempts


def _dead_letter_copy(delivery: Delivery, attempts: int, project: str) -> NewMessage:
    # Offset form with milliseconds, as real dead-lettered messages carry it.
    published = delivery.publish_time.astimezone(UTC).isoformat(timespec="milliseconds")
    attributes = {
        **delivery.attributes,
        "CloudPubSubDeadLetterSourceDeliveryCount": str(attempts),
        "CloudPubSubDeadLetterSourceSubscription": delivery.subscription,
        "CloudPubSubDeadLetterSourceSubscriptionProject": project,
        "CloudPubSubDeadLetterSourceTopicPublishTime": published,
    }
    return NewMessage(delivery.data, attributes, delivery.ordering_key)
