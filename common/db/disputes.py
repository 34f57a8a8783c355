"""Dispute state: opened once, closed once, whatever order and however often events arrive.

A close that arrives first is recorded as a row with its outcome and no amount; the opening
then fills in the amount and its caller applies the net effect. Both orders end in the same
row. Two events of one dispute serialise on its primary key: an insert that meets another
transaction's uncommitted row waits for it, then finds it and locks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

Outcome = Literal["won", "lost"]


@dataclass(frozen=True, slots=True)
class Dispute:
    id: str
    account_id: str
    amount: int | None
    """None until the opening has arrived."""
    status: str

    @property
    def opened(self) -> bool:
        return self.amount is not None


_OPEN = sa.text(
    """
    INSERT INTO disputes (id, account_id, amount, status, opened_by, opened_at)
    VALUES (:id, :account_id, :amount, 'open', :event_id, now())
    ON CONFLICT (id) DO NOTHING
    RETURNING id
    """
)
_CLOSE_UNOPENED = sa.text(
    """
    INSERT INTO disputes (id, account_id, status, closed_by, closed_at)
    VALUES (:id, :account_id, :status, :event_id, now())
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
_OPEN_CLOSED = sa.text(
    """
    UPDATE disputes SET amount = :amount, opened_by = :event_id, opened_at = now()
    WHERE id = :id AND opened_by IS NULL
    """
)


def open_dispute(
    conn: Connection, dispute_id: str, account_id: str, amount: int, event_id: str
) -> bool:
    """False when a row for the dispute exists already: opened, or closed before it was."""
    params = {"id": dispute_id, "account_id": account_id, "amount": amount, "event_id": event_id}
    return conn.execute(_OPEN, params).first() is not None


def close_unopened(
    conn: Connection, dispute_id: str, account_id: str, status: Outcome, event_id: str
) -> bool:
    """Records a close that came before its opening; False when a row exists already."""
    params = {"id": dispute_id, "account_id": account_id, "status": status, "event_id": event_id}
    return conn.execute(_CLOSE_UNOPENED, params).first() is not None


def lock(conn: Connection, dispute_id: str) -> Dispute | None:
    row = conn.execute(_LOCK, {"id": dispute_id}).first()
    if row is None:
        return None
    amount = None if row.amount is None else int(row.amount)
    return Dispute(row.id, row.account_id, amount, row.status)


def close(conn: Connection, dispute_id: str, status: Outcome, event_id: str) -> None:
    conn.execute(_CLOSE, {"id": dispute_id, "status": status, "event_id": event_id})


def open_closed(conn: Connection, dispute_id: str, amount: int, event_id: str) -> None:
    """Gives a dispute closed before it was opened the amount its opening carries."""
    conn.execute(_OPEN_CLOSED, {"id": dispute_id, "amount": amount, "event_id": event_id})
