"""A balance movement in one statement: the inbox claim, the balance, the ledger transaction
with its postings and, for a notifiable account, the outbox row announcing the new balances.

Payments and payouts are most of the traffic and need no reads before they write, so one
round trip carries what `inbox.claim`, `accounts.apply_delta`, `ledger.record` and
`outbox.add` carry in four. Each later step runs only if the one before it wrote a row: a
duplicate claims nothing and changes nothing; an unknown account or another currency
updates nothing and the caller, seeing the claim without the update, rolls back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from common.db.inbox import EventKey
from common.db.ledger import Posting, balanced
from common.db.pg8000_dialect import prepared

SQL = """
    WITH claim AS (
        INSERT INTO inbox (source, event_id, event_type, subscription, message_id, outcome,
                           body_sha256)
        VALUES (:source, :event_id, :event_type, :subscription, :message_id, 'applied',
                :body_sha256)
        ON CONFLICT (subscription, source, event_id) DO NOTHING
        RETURNING 1
    ), account AS (
        UPDATE accounts
        SET available = available + :available, held = held + :held, updated_at = now()
        WHERE id = :account_id AND currency = :currency AND EXISTS (SELECT FROM claim)
        RETURNING id, currency, available, held,
                  notify_url IS NOT NULL AND notify_disabled_at IS NULL AS notify
    ), tx AS (
        INSERT INTO ledger_transactions (account_id, kind, currency, subscription, source,
                                         event_id)
        SELECT id, :kind, currency, :subscription, :source, :event_id FROM account
        RETURNING id
    ), posted AS (
        INSERT INTO postings (transaction_id, ledger_account, amount, currency)
        SELECT tx.id, p.ledger_account, p.amount, :currency
        FROM tx, unnest(CAST(:accounts AS text[]), CAST(:amounts AS bigint[]))
             AS p (ledger_account, amount)
    ), announced AS (
        INSERT INTO outbox (account_id, kind, payload)
        SELECT id, :notify_kind,
               jsonb_build_object('type', CAST(:notify_kind AS text), 'account_id', id,
                                  'currency', currency, 'available', available, 'held', held,
                                  'caused_by', CAST(:event_id AS text))
        FROM account WHERE notify
        RETURNING id
    )
    SELECT EXISTS (SELECT FROM claim) AS claimed,
           EXISTS (SELECT FROM account) AS applied,
           (SELECT id FROM announced) AS outbox_id
"""
"""The statement's text; the outbox payload is the one `workers.ledger.handler._announce`
writes, balances after the update included. `tests/load/bench_worker.py` runs it too."""
_APPLY = prepared(SQL)


@dataclass(frozen=True, slots=True)
class Arrival:
    """What the inbox keeps about a delivery."""

    key: EventKey
    event_type: str | None
    subscription: str
    message_id: str | None
    body_sha256: bytes


@dataclass(frozen=True, slots=True)
class Movement:
    account_id: str
    currency: str
    kind: str
    postings: Sequence[Posting]
    available: int
    held: int


@dataclass(frozen=True, slots=True)
class Outcome:
    claimed: bool
    """False: the inbox already had the event; nothing was written."""
    applied: bool
    """False with `claimed`: no account has that id and currency; the caller must roll back."""
    outbox_id: int | None


def apply(conn: Connection, arrival: Arrival, movement: Movement, *, notify_kind: str) -> Outcome:
    entries = balanced(movement.kind, movement.postings)
    row = conn.execute(
        _APPLY,
        {
            "source": arrival.key.source,
            "event_id": arrival.key.event_id,
            "event_type": arrival.event_type,
            "subscription": arrival.subscription,
            "message_id": arrival.message_id,
            "body_sha256": arrival.body_sha256,
            "account_id": movement.account_id,
            "currency": movement.currency,
            "available": movement.available,
            "held": movement.held,
            "kind": movement.kind,
            "accounts": [p.ledger_account for p in entries],
            "amounts": [p.amount for p in entries],
            "notify_kind": notify_kind,
        },
    ).one()
    outbox_id = None if row.outbox_id is None else int(row.outbox_id)
    return Outcome(claimed=bool(row.claimed), applied=bool(row.applied), outbox_id=outbox_id)
