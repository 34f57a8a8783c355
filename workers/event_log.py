"""The event-log subscription's handler: every verified event is recorded once.

Its subscription has no filter, so whatever source an event came from and whichever
handlers take it, `hookyard events list` can show it; the topology loader refuses a
topology in which some source's events could reach no subscription at all.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import Connection

from common.db import event_log
from common.logging import get_logger
from common.storable import datetime_problem
from workers.delivery import Delivered, refuse_conflict

log = get_logger(__name__)


def record_event(conn: Connection, delivered: Delivered) -> list[int]:
    message = delivered.message
    first = refuse_conflict(
        event_log.record(
            conn,
            event_log.Received(
                key=delivered.key,
                event_type=delivered.event_type,
                received_at=received_at(
                    message.attributes.get("received_at"), message.publish_time
                ),
                content_type=message.attributes.get("content_type"),
                body_sha256=delivered.body_sha256,
                body_bytes=len(message.data),
                message_id=message.message_id,
            ),
        )
    )
    if not first:
        log.info("event already in the log")
    return []


def received_at(*candidates: str | None) -> datetime:
    """When ingest saw the event (its attribute), else when Pub/Sub took it, else now."""
    for raw in candidates:
        if not raw:
            continue
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            continue
        if moment.utcoffset() is not None and datetime_problem(moment) is None:
            return moment.astimezone(UTC)
    return datetime.now(UTC)
