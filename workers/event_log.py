"""The event-log subscription's handler: every verified event is recorded once.

Its subscription has no filter, so whatever source an event came from and whichever
handlers take it, `hookyard events list` can show it; the topology loader refuses a
topology in which some source's events could reach no subscription at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy.engine import Connection

from common.db import event_log
from common.errors import BadRequest
from common.logging import get_logger
from common.storable import datetime_problem
from common.topology import HEADER_PREFIX
from common.webhook_body import payload_document
from workers.delivery import DUPLICATE, NOTHING, Delivered, Handled, refuse_conflict

log = get_logger(__name__)


def record_event(conn: Connection, delivered: Delivered) -> Handled:
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
                payload=message.data,
                payload_json=searchable_json(message.data, message.attributes.get("content_type")),
                headers=kept_headers(message.attributes),
            ),
        )
    )
    if not first:
        log.info("event already in the log")
        return DUPLICATE
    return NOTHING


def searchable_json(body: bytes, content_type: str | None) -> str | None:
    """The payload as JSON text for jsonb, or None when it has no JSON shape or PostgreSQL
    could not take it (a number beyond its range)."""
    try:
        document = payload_document(body, content_type)
        return json.dumps(document, allow_nan=False, ensure_ascii=False)
    except (BadRequest, ValueError, RecursionError):
        return None


def kept_headers(attributes: Mapping[str, str]) -> dict[str, str]:
    """The sender headers ingest kept (attributes `header.<name>`), by lower-case name."""
    return {
        name.removeprefix(HEADER_PREFIX): value
        for name, value in attributes.items()
        if name.startswith(HEADER_PREFIX)
    }


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
