"""Ledger invariants and the record of each reconcile run.

Each check is one statement, so it sees one snapshot; the worker moves an account's
materialised balances and writes its postings in one transaction, so a concurrent write can
never show up as a false mismatch. Findings are capped per check: one bad migration must
not turn a reconcile row (or its log line) into megabytes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

MAX_FINDINGS = 100
SHOWN_IN_STATS = 10

_UNBALANCED = sa.text(
    """
    SELECT transaction_id, sum(amount) AS total
    FROM postings
    GROUP BY transaction_id
    HAVING sum(amount) <> 0
    ORDER BY transaction_id
    LIMIT :limit
    """
)
# Account ids never contain ':', so 'account:<id>:available' names exactly one account.
# (`\:` keeps sa.text from reading `:available` as a bind parameter.)
_BALANCE_MISMATCH = sa.text(
    r"""
    WITH posted AS (
        SELECT ledger_account, sum(amount) AS total
        FROM postings
        WHERE ledger_account LIKE 'account:%'
        GROUP BY ledger_account
    )
    SELECT a.id, a.available, a.held,
           coalesce(pa.total, 0) AS posted_available, coalesce(ph.total, 0) AS posted_held
    FROM accounts AS a
    LEFT JOIN posted AS pa ON pa.ledger_account = 'account:' || a.id || '\:available'
    LEFT JOIN posted AS ph ON ph.ledger_account = 'account:' || a.id || '\:held'
    WHERE a.available <> coalesce(pa.total, 0) OR a.held <> coalesce(ph.total, 0)
    ORDER BY a.id
    LIMIT :limit
    """
)
_NEGATIVE_HELD = sa.text("SELECT id, held FROM accounts WHERE held < 0 ORDER BY id LIMIT :limit")
_RECORD = sa.text(
    """
    INSERT INTO reconciliations (schedule_time, ok, problems)
    VALUES (:schedule_time, :ok, CAST(:problems AS jsonb))
    RETURNING id
    """
)
_LATEST = sa.text(
    """
    SELECT id, schedule_time, ok, checked_at, problems, jsonb_array_length(problems) AS n
    FROM reconciliations
    ORDER BY id DESC
    LIMIT 1
    """
)


def unbalanced_transactions(conn: Connection, limit: int = MAX_FINDINGS) -> list[dict[str, Any]]:
    """Transactions whose postings do not sum to zero: money created or destroyed."""
    return [
        {"check": "transaction_balance", "transaction_id": int(r.transaction_id),
         "sum": int(r.total)}
        for r in conn.execute(_UNBALANCED, {"limit": limit})
    ]  # fmt: skip


def balance_mismatches(conn: Connection, limit: int = MAX_FINDINGS) -> list[dict[str, Any]]:
    """Accounts whose materialised balances differ from the sum of their postings."""
    return [
        {"check": "account_balance", "account_id": r.id,
         "available": int(r.available), "posted_available": int(r.posted_available),
         "held": int(r.held), "posted_held": int(r.posted_held)}
        for r in conn.execute(_BALANCE_MISMATCH, {"limit": limit})
    ]  # fmt: skip


def negative_held(conn: Connection, limit: int = MAX_FINDINGS) -> list[dict[str, Any]]:
    """A hold can only release or forfeit what it took, so held below zero is a bug."""
    return [
        {"check": "held_non_negative", "account_id": r.id, "held": int(r.held)}
        for r in conn.execute(_NEGATIVE_HELD, {"limit": limit})
    ]


def check(conn: Connection) -> list[dict[str, Any]]:
    """Every invariant's findings; empty means the ledger reconciles."""
    return [*unbalanced_transactions(conn), *balance_mismatches(conn), *negative_held(conn)]


def record(conn: Connection, schedule_time: datetime, problems: list[dict[str, Any]]) -> int:
    row_id: int = conn.execute(
        _RECORD,
        {"schedule_time": schedule_time, "ok": not problems, "problems": json.dumps(problems)},
    ).scalar_one()
    return row_id


def last_reconciliation(conn: Connection) -> dict[str, Any] | None:
    """The latest run, JSON-ready for `/admin/stats` (None before the first run)."""
    row = conn.execute(_LATEST).mappings().first()
    if row is None:
        return None
    return {
        "id": int(row["id"]),
        "schedule_time": row["schedule_time"].isoformat(),
        "checked_at": row["checked_at"].isoformat(),
        "ok": bool(row["ok"]),
        "problem_count": int(row["n"]),
        "problems": list(row["problems"])[:SHOWN_IN_STATS],
    }
