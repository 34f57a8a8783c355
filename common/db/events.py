"""Processed events as operators look them up: the inbox, and the ledger rows they caused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    source: str
    event_id: str
    event_type: str | None
    outcome: str
    subscription: str
    message_id: str | None
    processed_at: datetime


_COLUMNS = "id, source, event_id, event_type, outcome, subscription, message_id, processed_at"


def list_page(
    conn: Connection, *, source: str | None, type_: str | None, after_id: int, limit: int
) -> list[Event]:
    clauses = ["id > :after"]
    params: dict[str, Any] = {"after": after_id, "limit": limit}
    if source is not None:
        clauses.append("source = :source")
        params["source"] = source
    if type_ is not None:
        clauses.append("event_type = :type")
        params["type"] = type_
    query = sa.text(
        f"SELECT {_COLUMNS} FROM inbox WHERE {' AND '.join(clauses)} ORDER BY id LIMIT :limit"
    )
    return [Event(**row) for row in conn.execute(query, params).mappings()]


def get(conn: Connection, source: str, event_id: str) -> Event | None:
    query = sa.text(f"SELECT {_COLUMNS} FROM inbox WHERE source = :source AND event_id = :id")
    row = conn.execute(query, {"source": source, "id": event_id}).mappings().first()
    return Event(**row) if row else None


def transactions(conn: Connection, source: str, event_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.text(
            "SELECT t.id, t.kind, t.account_id, t.currency, p.ledger_account, p.amount "
            "FROM ledger_transactions AS t JOIN postings AS p ON p.transaction_id = t.id "
            "WHERE t.source = :source AND t.event_id = :id ORDER BY t.id, p.id"
        ),
        {"source": source, "id": event_id},
    ).all()
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        tx = out.setdefault(
            r.id, {"id": r.id, "kind": r.kind, "account_id": r.account_id,
                   "currency": r.currency, "postings": []},
        )  # fmt: skip
        tx["postings"].append({"ledger_account": r.ledger_account, "amount": r.amount})
    return list(out.values())
