"""Daily closing balances: what each account held at the end of a closed UTC day.

Computed from postings (the ledger's truth), not from the materialised `accounts` balances,
so a statement for an earlier day can be (re)written at any time and gives the same row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection


@dataclass(frozen=True, slots=True)
class DailyBalance:
    account_id: str
    date: date
    currency: str
    available: int
    held: int
    computed_at: datetime


_COLUMNS = "account_id, date, currency, available, held, computed_at"

# Keyset page: one index range scan per page however many accounts there are.
_ACCOUNT_PAGE = sa.text(
    """
    SELECT id FROM accounts
    WHERE id > :after AND created_at < :end
    ORDER BY id
    LIMIT :limit
    """
)
# Sums only postings whose transaction was created before the end of the day; `FILTER`
# keeps both balances to one scan of the account's two ledger accounts.
_UPSERT_CLOSING = sa.text(
    f"""
    WITH sums AS (
        SELECT coalesce(sum(p.amount) FILTER (WHERE p.ledger_account = :available), 0)
                   AS available,
               coalesce(sum(p.amount) FILTER (WHERE p.ledger_account = :held), 0) AS held
        FROM postings AS p JOIN ledger_transactions AS t ON t.id = p.transaction_id
        WHERE p.ledger_account IN (:available, :held) AND t.created_at < :end
    )
    INSERT INTO daily_balances (account_id, date, currency, available, held)
    SELECT a.id, :date, a.currency, sums.available, sums.held
    FROM accounts AS a, sums
    WHERE a.id = :account_id
    ON CONFLICT (account_id, date) DO UPDATE
    SET currency = EXCLUDED.currency, available = EXCLUDED.available,
        held = EXCLUDED.held, computed_at = now()
    RETURNING {_COLUMNS}
    """
)
_GET = sa.text(f"SELECT {_COLUMNS} FROM daily_balances WHERE account_id = :id AND date = :date")
_FOR_DATE = sa.text(
    f"""
    SELECT {_COLUMNS} FROM daily_balances
    WHERE date = :date AND account_id > :after
    ORDER BY account_id
    LIMIT :limit
    """
)


def end_of(day: date) -> datetime:
    """The first instant after `day` in UTC: a statement includes everything before it."""
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def account_page(conn: Connection, day: date, *, after: str, limit: int) -> list[str]:
    """Accounts that existed by the end of `day`, ordered by id, after `after` ('' first)."""
    rows = conn.execute(_ACCOUNT_PAGE, {"after": after, "end": end_of(day), "limit": limit})
    return [str(r.id) for r in rows]


def write_closing(conn: Connection, account_id: str, day: date) -> DailyBalance | None:
    """Upserts the account's balances as of the end of `day`; None when no such account."""
    params = {
        "account_id": account_id,
        "available": f"account:{account_id}:available",
        "held": f"account:{account_id}:held",
        "date": day,
        "end": end_of(day),
    }
    row = conn.execute(_UPSERT_CLOSING, params).mappings().first()
    return DailyBalance(**row) if row else None


def get(conn: Connection, account_id: str, day: date) -> DailyBalance | None:
    row = conn.execute(_GET, {"id": account_id, "date": day}).mappings().first()
    return DailyBalance(**row) if row else None


def for_date(
    conn: Connection, day: date, *, after: str = "", limit: int = 1000
) -> list[DailyBalance]:
    rows = conn.execute(_FOR_DATE, {"date": day, "after": after, "limit": limit}).mappings()
    return [DailyBalance(**row) for row in rows]
