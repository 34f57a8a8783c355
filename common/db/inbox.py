"""The inbox makes every effect idempotent: its row and the effect commit together or not at all."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_CLAIM = sa.text(
    """
    INSERT INTO inbox (source, event_id, event_type, subscription, message_id, outcome)
    VALUES (:source, :event_id, :event_type, :subscription, :message_id, 'applied')
    ON CONFLICT (source, event_id) DO NOTHING
    RETURNING 1
    """
)
_SET_OUTCOME = sa.text(
    "UPDATE inbox SET outcome = :outcome WHERE source = :source AND event_id = :event_id"
)


@dataclass(frozen=True, slots=True)
class EventKey:
    source: str
    event_id: str


def claim(
    conn: Connection,
    key: EventKey,
    *,
    event_type: str | None,
    subscription: str,
    message_id: str | None,
) -> bool:
    """True for the first delivery of the event.

    A concurrent delivery of the same event blocks on the unique key until the first
    transaction ends, then sees the row (False) or, if that one rolled back, claims it.
    """
    row = conn.execute(
        _CLAIM,
        {
            "source": key.source,
            "event_id": key.event_id,
            "event_type": event_type,
            "subscription": subscription,
            "message_id": message_id,
        },
    ).first()
    return row is not None


def mark_ignored(conn: Connection, key: EventKey) -> None:
    conn.execute(
        _SET_OUTCOME, {"outcome": "ignored", "source": key.source, "event_id": key.event_id}
    )
