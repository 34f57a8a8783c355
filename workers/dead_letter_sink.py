"""The dead-letter topic's subscriber: what the broker gave up on becomes a `dead_letters` row."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from common.db import dead_letters, delivery_failures
from common.db.delivery_failures import failure_key
from common.envelope import PushEnvelope
from common.logging import get_logger
from common.storable import parse_bounded_int

log = get_logger(__name__)

DELIVERY_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"
SOURCE_SUBSCRIPTION = "CloudPubSubDeadLetterSourceSubscription"


def store_forwarded(conn: Connection, envelope: PushEnvelope) -> int:
    """Keeps the worker's last recorded error when there is one: that is what an operator
    needs to see, not merely that attempts ran out."""
    attrs = envelope.message.attributes
    count = attrs.get(DELIVERY_COUNT, "")
    subscription = attrs.get(SOURCE_SUBSCRIPTION) or "unknown"
    exhausted = f"not acknowledged after {count or 'the maximum'} delivery attempts"
    failure = delivery_failures.get(
        conn, subscription, failure_key(attrs, envelope.message.message_id)
    )
    dead_letter_id = dead_letters.record(
        conn,
        origin="broker",
        subscription=subscription,
        message_id=envelope.message.message_id,
        data=envelope.message.data,
        attributes=attrs,
        delivery_count=parse_bounded_int(count) or 0,
        error_class=failure.error_class if failure else "MaxDeliveryAttemptsExceeded",
        error_message=f"{failure.error_message} ({exhausted})" if failure else exhausted,
        first_failed_at=failure.first_failed_at if failure else None,
    )
    log.warning("message dead-lettered by the broker", dead_letter_id=dead_letter_id)
    return dead_letter_id
