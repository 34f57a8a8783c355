"""Accounts and their materialised balances (kept equal to the sum of their postings)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.db.conditions import where


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    currency: str
    notify_url: str | None
    available: int
    held: int
    created_at: datetime
    updated_at: datetime
    notify_disabled_at: datetime | None = None

    @property
    def notifications_enabled(self) -> bool:
        return self.notify_url is not None and self.notify_disabled_at is None


_COLUMNS = "id, currency, notify_url, available, held, created_at, updated_at, notify_disabled_at"

_GET = sa.text(f"SELECT {_COLUMNS} FROM accounts WHERE id = :id")
_LOCK = sa.text(f"SELECT {_COLUMNS} FROM accounts WHERE id = :id FOR UPDATE")
_INSERT = sa.text(
    f"""
    INSERT INTO accounts (id, currency, notify_url) VALUES (:id, :currency, :notify_url)
    ON CONFLICT (id) DO NOTHING
    RETURNING {_COLUMNS}
    """
)
_UPDATE = sa.text(
    f"""
    UPDATE accounts SET currency = :currency, notify_url = :notify_url, updated_at = now(),
        notify_disabled_at = CASE WHEN notify_url IS DISTINCT FROM :notify_url THEN NULL
                                  ELSE notify_disabled_at END
    WHERE id = :id
    RETURNING {_COLUMNS}
    """
)
_HAS_ENTRIES = sa.text("SELECT EXISTS (SELECT 1 FROM ledger_transactions WHERE account_id = :id)")
_APPLY_DELTA = sa.text(
    f"""
    UPDATE accounts
    SET available = available + :available, held = held + :held, updated_at = now()
    WHERE id = :id AND currency = :currency
    RETURNING {_COLUMNS}
    """
)


def get(conn: Connection, account_id: str) -> Account | None:
    row = conn.execute(_GET, {"id": account_id}).mappings().first()
    return Account(**row) if row else None


def lock(conn: Connection, account_id: str) -> Account | None:
    """Row lock for the rest of the transaction: balance changes to one account serialise."""
    row = conn.execute(_LOCK, {"id": account_id}).mappings().first()
    return Account(**row) if row else None


def create(
    conn: Connection, account_id: str, currency: str, notify_url: str | None
) -> Account | None:
    """None when the account already exists."""
    row = (
        conn.execute(_INSERT, {"id": account_id, "currency": currency, "notify_url": notify_url})
        .mappings()
        .first()
    )
    return Account(**row) if row else None


def update(conn: Connection, account_id: str, currency: str, notify_url: str | None) -> Account:
    row = (
        conn.execute(_UPDATE, {"id": account_id, "currency": currency, "notify_url": notify_url})
        .mappings()
        .one()
    )
    return Account(**row)


_DISABLE = sa.text(
    "UPDATE accounts SET notify_disabled_at = now() "
    "WHERE notify_url = :url AND notify_disabled_at IS NULL"
)


def disable_notifications(conn: Connection, url: str) -> None:
    """A 410 Gone from a receiver stops every account that points at it, until its URL changes."""
    conn.execute(_DISABLE, {"url": url})


def has_entries(conn: Connection, account_id: str) -> bool:
    return bool(conn.execute(_HAS_ENTRIES, {"id": account_id}).scalar_one())


def apply_delta(
    conn: Connection, account_id: str, currency: str, *, available: int, held: int
) -> Account | None:
    """Moves the balances and takes the row lock in one round trip.

    None when no account has that id and currency; the caller asks `get` why (rare path).
    """
    row = (
        conn.execute(
            _APPLY_DELTA,
            {"id": account_id, "currency": currency, "available": available, "held": held},
        )
        .mappings()
        .first()
    )
    return Account(**row) if row else None


def list_page(
    conn: Connection, *, prefix: str | None, after_id: str | None, limit: int
) -> list[Account]:
    """In id order (the database's collation, as the primary key is), keyset on the id:
    `after_id` is the last id of the previous page."""
    clause, params = where([("starts_with(id, {})", prefix), ("id > {}", after_id)])
    query = sa.text(f"SELECT {_COLUMNS} FROM accounts WHERE {clause} ORDER BY id LIMIT :limit")
    return [Account(**row) for row in conn.execute(query, {**params, "limit": limit}).mappings()]
