"""The last transient failure of each failing delivery, keyed so the dead-letter sink can
find it: Pub/Sub's dead-letter copy has a new message id, so the key is the event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.storable import scrub


@dataclass(frozen=True, slots=True)
class Failure:
    attempts: int
    error_class: str
    error_message: str
    first_failed_at: datetime


def failure_key(attributes: Mapping[str, str], message_id: str) -> str:
    """The event when the message names one (it survives dead-lettering), else the message."""
    source, event_id = attributes.get("source"), attributes.get("event_id")
    key = f"{source}/{event_id}" if source and event_id else f"message/{message_id}"
    return scrub(key)


_NOTE = sa.text(
    """
    INSERT INTO delivery_failures (subscription, message_id, error_class, error_message)
    VALUES (:subscription, :key, :error_class, :error_message)
    ON CONFLICT (subscription, message_id) DO UPDATE SET
        attempts = delivery_failures.attempts + 1,
        error_class = EXCLUDED.error_class,
        error_message = EXCLUDED.error_message,
        last_failed_at = now()
    """
)
_GET = sa.text(
    "SELECT attempts, error_class, error_message, first_failed_at FROM delivery_failures "
    "WHERE subscription = :subscription AND message_id = :key"
)


def note(conn: Connection, subscription: str, key: str, error_class: str, message: str) -> None:
    conn.execute(
        _NOTE,
        {"subscription": scrub(subscription), "key": key, "error_class": scrub(error_class),
         "error_message": scrub(message)[:2000]},
    )  # fmt: skip


def get(conn: Connection, subscription: str, key: str) -> Failure | None:
    row = conn.execute(_GET, {"subscription": subscription, "key": key}).first()
    return (
        Failure(int(row.attempts), row.error_class, row.error_message, row.first_failed_at)
        if row
        else None
    )
