"""The dead-letter topic's subscriber: what the broker gave up on becomes a `dead_letters` row."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from common.db import dead_letters
from common.envelope import PushEnvelope
from common.logging import get_logger

log = get_logger(__name__)

DELIVERY_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"
SOURCE_SUBSCRIPTION = "CloudPubSubDeadLetterSourceSubscription"


def store_forwarded(conn: Connection, envelope: PushEnvelope) -> int:
    attrs = envelope.message.attributes
    count = attrs.get(DELIVERY_COUNT, "")
    dead_letter_id = dead_letters.record(
        conn,
        origin="broker",
        subscription=attrs.get(SOURCE_SUBSCRIPTION) or "unknown",
        message_id=envelope.message.message_id,
        data=envelope.message.data,
        attributes=attrs,
        delivery_count=int(count) if count.isdigit() else 0,
        error_class="MaxDeliveryAttemptsExceeded",
        error_message=f"not acknowledged after {count or 'the maximum'} delivery attempts",
    )
    log.warning("message dead-lettered by the broker", dead_letter_id=dead_letter_id)
    return dead_letter_id
