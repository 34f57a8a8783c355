"""The transactional outbox: what must be announced, written with the change it announces.

A relay enqueues each row as a named task right after commit; the sweeper catches rows whose
relay never ran (crash between commit and enqueue). Delivery state lives here too, so the
task handler is idempotent: a delivered row is never sent again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    account_id: str
    kind: str
    payload: dict[str, Any]
    state: str
    attempts: int


_ADD = sa.text(
    """
    INSERT INTO outbox (account_id, kind, payload)
    VALUES (:account_id, :kind, CAST(:payload AS jsonb))
    RETURNING id
    """
)
_MARK_ENQUEUED = sa.text(
    "UPDATE outbox SET enqueued_at = now() WHERE id = ANY(:ids) AND enqueued_at IS NULL"
)
_UNENQUEUED = sa.text(
    """
    SELECT id FROM outbox
    WHERE enqueued_at IS NULL AND state = 'pending'
      AND created_at < now() - make_interval(secs => :age)
    ORDER BY id LIMIT :limit
    """
)
_GET = sa.text("SELECT id, account_id, kind, payload, state, attempts FROM outbox WHERE id = :id")
_SETTLE = sa.text(
    """
    UPDATE outbox SET state = :state, attempts = attempts + 1,
        delivered_at = CASE WHEN :state = 'delivered' THEN now() ELSE delivered_at END
    WHERE id = :id
    """
)
_COUNT_ATTEMPT = sa.text("UPDATE outbox SET attempts = attempts + 1 WHERE id = :id")
_RECORD_ATTEMPT = sa.text(
    """
    INSERT INTO notification_attempts (outbox_id, url, status, error, duration_ms)
    VALUES (:outbox_id, :url, :status, :error, :duration_ms)
    """
)
_PENDING_FOR = sa.text("SELECT count(*) FROM outbox WHERE account_id = :id AND state = 'pending'")


def add(conn: Connection, account_id: str, kind: str, payload: dict[str, Any]) -> int:
    row_id: int = conn.execute(
        _ADD, {"account_id": account_id, "kind": kind, "payload": json.dumps(payload)}
    ).scalar_one()
    return row_id


def mark_enqueued(conn: Connection, ids: Sequence[int]) -> None:
    if ids:
        conn.execute(_MARK_ENQUEUED, {"ids": list(ids)})


def unenqueued(conn: Connection, older_than_s: float, limit: int) -> list[int]:
    rows = conn.execute(_UNENQUEUED, {"age": older_than_s, "limit": limit})
    return [int(r.id) for r in rows]


def get(conn: Connection, outbox_id: int) -> OutboxRow | None:
    row = conn.execute(_GET, {"id": outbox_id}).mappings().first()
    return OutboxRow(**row) if row else None


def settle(conn: Connection, outbox_id: int, state: str) -> None:
    conn.execute(_SETTLE, {"id": outbox_id, "state": state})


def count_attempt(conn: Connection, outbox_id: int) -> None:
    conn.execute(_COUNT_ATTEMPT, {"id": outbox_id})


def record_attempt(
    conn: Connection,
    *,
    outbox_id: int,
    url: str,
    status: int | None,
    error: str | None,
    duration_ms: int,
) -> None:
    conn.execute(
        _RECORD_ATTEMPT,
        {"outbox_id": outbox_id, "url": url, "status": status, "error": error,
         "duration_ms": duration_ms},
    )  # fmt: skip


def pending_for(conn: Connection, account_id: str) -> int:
    return int(conn.execute(_PENDING_FOR, {"id": account_id}).scalar_one())


_OLDEST_UNENQUEUED = sa.text(
    """
    SELECT extract(epoch FROM now() - min(created_at)) FROM outbox
    WHERE enqueued_at IS NULL AND state = 'pending'
    """
)


def oldest_unenqueued_age_s(conn: Connection) -> float:
    """How long the oldest row not yet on the queue has waited (0 when none): the relay's lag."""
    age = conn.execute(_OLDEST_UNENQUEUED).scalar()
    return max(float(age), 0.0) if age is not None else 0.0
