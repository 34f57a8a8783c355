"""The event log: one row per verified event, written whatever handlers exist for it.

It keeps the exact bytes, the kept sender headers, and for search the payload as jsonb
(containment, GIN `jsonb_path_ops`) and its strings and numbers as a text-search vector.
A payload too large for the vector (PostgreSQL caps one at 1 MB) is stored and found by
path, not by words.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.db.inbox import Claim, EventKey, same_body
from common.db.pg8000_dialect import prepared

MAX_FULL_TEXT_BYTES = 128 * 1024
"""Payloads up to this size get a text-search vector; its lexemes, positions and entries
then stay well under PostgreSQL's 1 MB per vector whatever the text."""

_RECORD = prepared(
    """
    INSERT INTO event_log (source, event_id, event_type, received_at, content_type,
                           body_sha256, body_bytes, message_id, payload, payload_json,
                           headers, search)
    VALUES (:source, :event_id, :event_type, :received_at, :content_type,
            :body_sha256, :body_bytes, :message_id, :payload, CAST(:payload_json AS jsonb),
            CAST(:headers AS jsonb),
            CASE WHEN :full_text THEN jsonb_to_tsvector('simple', CAST(:payload_json AS jsonb),
                                                        '["string", "numeric"]') END)
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
    payload: bytes
    payload_json: str | None
    """The payload as JSON text PostgreSQL accepts, or None when it is not JSON-shaped."""
    headers: Mapping[str, str]


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
            "payload": event.payload,
            "payload_json": event.payload_json,
            "headers": json.dumps(dict(event.headers)),
            "full_text": event.payload_json is not None
            and len(event.payload) <= MAX_FULL_TEXT_BYTES,
        },
    ).first()
    if inserted is not None:
        return Claim.FIRST
    return same_body(conn.execute(_BODY_OF, params).scalar(), event.body_sha256)
