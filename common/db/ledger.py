"""Double-entry ledger writes: a transaction row and postings that sum to zero."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.db.inbox import EventKey


@dataclass(frozen=True, slots=True)
class Posting:
    ledger_account: str
    amount: int


class UnbalancedTransaction(ValueError):
    """Postings that do not sum to zero are a programming error, never data."""


# One round trip for the transaction row and all of its postings.
_RECORD = sa.text(
    """
    WITH tx AS (
        INSERT INTO ledger_transactions (account_id, kind, currency, subscription, source,
                                         event_id)
        VALUES (:account_id, :kind, :currency, :subscription, :source, :event_id)
        RETURNING id
    )
    INSERT INTO postings (transaction_id, ledger_account, amount, currency)
    SELECT tx.id, p.ledger_account, p.amount, :currency
    FROM tx, unnest(CAST(:accounts AS text[]), CAST(:amounts AS bigint[]))
         AS p (ledger_account, amount)
    RETURNING transaction_id
    """
)
_REFUND_STATE = sa.text(
    """
    INSERT INTO charges (id, account_id) VALUES (:id, :account_id)
    ON CONFLICT (id) DO UPDATE SET updated_at = charges.updated_at
    RETURNING refunded_applied, account_id
    """
)
_SET_REFUNDED = sa.text(
    "UPDATE charges SET refunded_applied = :amount, updated_at = now() WHERE id = :id"
)


def balanced(kind: str, postings: Sequence[Posting]) -> list[Posting]:
    """The nonzero postings, refused unless there are some and they sum to zero."""
    nonzero = [p for p in postings if p.amount != 0]
    if not nonzero or sum(p.amount for p in nonzero) != 0:
        raise UnbalancedTransaction(f"{kind}: postings {nonzero} do not balance")
    return nonzero


def record(
    conn: Connection,
    *,
    account_id: str,
    kind: str,
    currency: str,
    cause: EventKey,
    subscription: str,
    postings: Sequence[Posting],
) -> int:
    """`subscription` names the handler whose inbox row proves `cause` was applied."""
    nonzero = balanced(kind, postings)
    tx_id = (
        conn.execute(
            _RECORD,
            {
                "account_id": account_id,
                "kind": kind,
                "currency": currency,
                "subscription": subscription,
                "source": cause.source,
                "event_id": cause.event_id,
                "accounts": [p.ledger_account for p in nonzero],
                "amounts": [p.amount for p in nonzero],
            },
        )
        .scalars()
        .first()
    )
    if tx_id is None:  # pragma: no cover - the CTE always returns the new id
        raise UnbalancedTransaction(f"{kind}: no postings were written")
    return int(tx_id)


def lock_charge(conn: Connection, charge_id: str, account_id: str) -> tuple[int, str]:
    """(refund already applied, owning account), creating the row and locking it."""
    row = conn.execute(_REFUND_STATE, {"id": charge_id, "account_id": account_id}).one()
    return int(row.refunded_applied), str(row.account_id)


def set_refunded(conn: Connection, charge_id: str, amount: int) -> None:
    conn.execute(_SET_REFUNDED, {"id": charge_id, "amount": amount})


@dataclass(frozen=True, slots=True)
class Entry:
    """One posting to an account's balance, with the transaction and event behind it."""

    id: int
    transaction_id: int
    ledger_account: str
    amount: int
    currency: str
    kind: str
    source: str
    event_id: str
    created_at: datetime


_ENTRIES = sa.text(
    """
    SELECT p.id, p.transaction_id, p.ledger_account, p.amount, p.currency,
           t.kind, t.source, t.event_id, t.created_at
    FROM postings AS p JOIN ledger_transactions AS t ON t.id = p.transaction_id
    WHERE t.account_id = :account_id AND p.id > :after
      AND p.ledger_account IN (:available, :held)
    ORDER BY p.id
    LIMIT :limit
    """
)


def entries(conn: Connection, account_id: str, *, after_id: int, limit: int) -> list[Entry]:
    params = {
        "account_id": account_id,
        "available": f"account:{account_id}:available",
        "held": f"account:{account_id}:held",
        "after": after_id,
        "limit": limit,
    }
    return [Entry(**row) for row in conn.execute(_ENTRIES, params).mappings()]
