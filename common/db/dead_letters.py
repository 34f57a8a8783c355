"""Dead letters: every message that will not be applied as delivered, kept whole for replay."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

Origin = Literal["worker", "broker"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    origin: str
    subscription: str
    message_id: str
    source: str | None
    event_id: str | None
    event_type: str | None
    data: bytes
    attributes: dict[str, str]
    delivery_count: int
    error_class: str | None
    error_message: str | None
    state: str
    first_failed_at: datetime
    last_failed_at: datetime


_COLUMNS = (
    "id, origin, subscription, message_id, source, event_id, event_type, data, attributes, "
    "delivery_count, error_class, error_message, state, first_failed_at, last_failed_at"
)

_RECORD = sa.text(
    """
    INSERT INTO dead_letters (origin, subscription, message_id, source, event_id, event_type,
                              data, attributes, delivery_count, error_class, error_message)
    VALUES (:origin, :subscription, :message_id, :source, :event_id, :event_type,
            :data, CAST(:attributes AS jsonb), :delivery_count, :error_class, :error_message)
    ON CONFLICT (subscription, message_id) DO UPDATE SET
        delivery_count = GREATEST(dead_letters.delivery_count, EXCLUDED.delivery_count),
        error_class = EXCLUDED.error_class,
        error_message = EXCLUDED.error_message,
        last_failed_at = now()
    RETURNING id
    """
)


def record(
    conn: Connection,
    *,
    origin: Origin,
    subscription: str,
    message_id: str,
    data: bytes,
    attributes: Mapping[str, str],
    delivery_count: int,
    error_class: str | None,
    error_message: str | None,
) -> int:
    """Idempotent per (subscription, message id): a redelivered failure updates its row."""
    dead_letter_id: int = conn.execute(
        _RECORD,
        {
            "origin": origin,
            "subscription": subscription,
            "message_id": message_id,
            "source": attributes.get("source"),
            "event_id": attributes.get("event_id"),
            "event_type": attributes.get("event_type"),
            "data": data,
            "attributes": json.dumps(dict(attributes)),
            "delivery_count": delivery_count,
            "error_class": error_class,
            "error_message": (error_message or "")[:2000] or None,
        },
    ).scalar_one()
    return dead_letter_id


def list_page(
    conn: Connection,
    *,
    source: str | None = None,
    state: str | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[DeadLetter]:
    clauses = ["TRUE"]
    params: dict[str, Any] = {"limit": limit}
    if source is not None:
        clauses.append("source = :source")
        params["source"] = source
    if state is not None:
        clauses.append("state = :state")
        params["state"] = state
    if after_id is not None:
        clauses.append("id > :after_id")
        params["after_id"] = after_id
    where = " AND ".join(clauses)
    query = sa.text(f"SELECT {_COLUMNS} FROM dead_letters WHERE {where} ORDER BY id LIMIT :limit")
    return [_row(r) for r in conn.execute(query, params).mappings()]


def get(conn: Connection, dead_letter_id: int) -> DeadLetter | None:
    row = (
        conn.execute(
            sa.text(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = :id"), {"id": dead_letter_id}
        )
        .mappings()
        .first()
    )
    return _row(row) if row else None


def _row(row: RowMapping) -> DeadLetter:
    values = dict(row)
    values["data"] = bytes(values["data"])
    return DeadLetter(**values)
