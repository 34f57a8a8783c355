"""The inbox makes every effect idempotent: its row and the effect commit together or not at all."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_CLAIM = sa.text(
    """
    INSERT INTO inbox (source, event_id, event_type, subscription, message_id, outcome,
                       body_sha256)
    VALUES (:source, :event_id, :event_type, :subscription, :message_id, :outcome,
            :body_sha256)
    ON CONFLICT (subscription, source, event_id) DO NOTHING
    RETURNING 1
    """
)
_BODY_OF = sa.text(
    "SELECT body_sha256 FROM inbox"
    " WHERE subscription = :subscription AND source = :source AND event_id = :event_id"
)
_SET_OUTCOME = sa.text(
    "UPDATE inbox SET outcome = :outcome, effects = CAST(:effects AS jsonb)"
    " WHERE subscription = :subscription AND source = :source AND event_id = :event_id"
)


@dataclass(frozen=True, slots=True)
class EventKey:
    source: str
    event_id: str


class Claim(Enum):
    FIRST = "first"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    """Same event id, different body: neither applied nor silently dropped."""


def claim(
    conn: Connection,
    key: EventKey,
    *,
    event_type: str | None,
    subscription: str,
    message_id: str | None,
    body_sha256: bytes,
    outcome: str = "applied",
) -> Claim:
    """FIRST for the first delivery of the event. `outcome` is 'ignored' for an event the
    caller already knows it will not apply, which saves marking it afterwards.

    A concurrent delivery of the same event blocks on the unique key until the first
    transaction ends, then sees the row or, if that one rolled back, claims it. Only a
    duplicate pays a second statement, to compare bodies.
    """
    inserted = conn.execute(
        _CLAIM,
        {
            "source": key.source,
            "event_id": key.event_id,
            "event_type": event_type,
            "subscription": subscription,
            "message_id": message_id,
            "body_sha256": body_sha256,
            "outcome": outcome,
        },
    ).first()
    if inserted is not None:
        return Claim.FIRST
    return compare_body(conn, key, body_sha256, subscription=subscription)


def compare_body(
    conn: Connection, key: EventKey, body_sha256: bytes, *, subscription: str
) -> Claim:
    """For a delivery whose claim found the row: DUPLICATE or CONFLICT."""
    params = {"subscription": subscription, "source": key.source, "event_id": key.event_id}
    return same_body(conn.execute(_BODY_OF, params).scalar(), body_sha256)


def same_body(stored: bytes | memoryview | None, body_sha256: bytes) -> Claim:
    """Rows written before hashes were kept (NULL) match any body."""
    if stored is None or bytes(stored) == body_sha256:
        return Claim.DUPLICATE
    return Claim.CONFLICT


def set_outcome(
    conn: Connection,
    key: EventKey,
    *,
    subscription: str,
    outcome: str,
    effects: dict[str, Any] | None = None,
) -> None:
    """What the handler made of the event it claimed, in the same transaction."""
    conn.execute(
        _SET_OUTCOME,
        {
            "outcome": outcome,
            "effects": None if effects is None else json.dumps(effects),
            "subscription": subscription,
            "source": key.source,
            "event_id": key.event_id,
        },
    )


def mark_ignored(conn: Connection, key: EventKey, *, subscription: str) -> None:
    set_outcome(conn, key, subscription=subscription, outcome="ignored")
