"""Dispute state: opened once, closed once, whatever order and however often events arrive."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection


@dataclass(frozen=True, slots=True)
class Dispute:
    id: str
    account_id: str
    amount: int
    status: str


_OPEN = sa.text(
    """
    INSERT INTO disputes (id, account_id, amount, status, opened_by)
    VALUES (:id, :account_id, :amount, 'open', :event_id)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
    """
)
_LOCK = sa.text("SELECT id, account_id, amount, status FROM disputes WHERE id = :id FOR UPDATE")
_CLOSE = sa.text(
    """
    UPDATE disputes SET status = :status, closed_by = :event_id, closed_at = now()
    WHERE id = :id AND status = 'open'
    """
)


def open_dispute(
    conn: Connection, dispute_id: str, account_id: str, amount: int, event_id: str
) -> bool:
    """False when the dispute was already opened (by this or another event)."""
    params = {"id": dispute_id, "account_id": account_id, "amount": amount, "event_id": event_id}
    return conn.execute(_OPEN, params).first() is not None


def lock(conn: Connection, dispute_id: str) -> Dispute | None:
    row = conn.execute(_LOCK, {"id": dispute_id}).first()
    return Dispute(row.id, row.account_id, int(row.amount), row.status) if row else None


def close(conn: Connection, dispute_id: str, status: str, event_id: str) -> None:
    conn.execute(_CLOSE, {"id": dispute_id, "status": status, "event_id": event_id})
