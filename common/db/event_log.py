"""The event log: one row per verified event, written whatever handlers exist for it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.db.inbox import Claim, EventKey, same_body
from common.db.pg8000_dialect import prepared

_RECORD = prepared(
    """
    INSERT INTO event_log (source, event_id, event_type, received_at, content_type,
                           body_sha256, body_bytes, message_id)
    VALUES (:source, :event_id, :event_type, :received_at, :content_type,
            :body_sha256, :body_bytes, :message_id)
    ON CONFLICT (source, event_id) DO NOTHING
    RETURNING 1
    """
)
_BODY_OF = sa.text(
    "SELECT body_sha256 FROM event_log WHERE source = :source AND event_id = :event_id"
)


@dataclass(frozen=True, slots=True)
class Received:
    key: EventKey
    event_type: str | None
    received_at: datetime
    content_type: str | None
    body_sha256: bytes
    body_bytes: int
    message_id: str


def record(conn: Connection, event: Received) -> Claim:
    params = {"source": event.key.source, "event_id": event.key.event_id}
    inserted = conn.execute(
        _RECORD,
        {
            **params,
            "event_type": event.event_type,
            "received_at": event.received_at,
            "content_type": event.content_type,
            "body_sha256": event.body_sha256,
            "body_bytes": event.body_bytes,
            "message_id": event.message_id,
        },
    ).first()
    if inserted is not None:
        return Claim.FIRST
    return same_body(conn.execute(_BODY_OF, params).scalar(), event.body_sha256)
