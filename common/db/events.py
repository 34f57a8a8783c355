"""Events as operators look them up: the event log, what the ledger made of each (its inbox
row), and the ledger rows they caused."""

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
    received_at: datetime
    recorded_at: datetime
    content_type: str | None
    body_sha256: bytes | None
    body_bytes: int | None
    message_id: str | None
    outcome: str
    """The ledger's `applied`/`ignored` when it took the event, else `recorded`."""
    processed_at: datetime | None


_FROM = """
    SELECT e.id, e.source, e.event_id, e.event_type, e.received_at, e.recorded_at,
           e.content_type, e.body_sha256, e.body_bytes, e.message_id,
           coalesce(i.outcome, 'recorded') AS outcome, i.processed_at
    FROM event_log AS e
    LEFT JOIN inbox AS i ON i.source = e.source AND i.event_id = e.event_id
"""


def list_page(
    conn: Connection, *, source: str | None, type_: str | None, after_id: int, limit: int
) -> list[Event]:
    clauses = ["e.id > :after"]
    params: dict[str, Any] = {"after": after_id, "limit": limit}
    if source is not None:
        clauses.append("e.source = :source")
        params["source"] = source
    if type_ is not None:
        clauses.append("e.event_type = :type")
        params["type"] = type_
    query = sa.text(f"{_FROM} WHERE {' AND '.join(clauses)} ORDER BY e.id LIMIT :limit")
    return [_event(row) for row in conn.execute(query, params).mappings()]


def get(conn: Connection, source: str, event_id: str) -> Event | None:
    query = sa.text(f"{_FROM} WHERE e.source = :source AND e.event_id = :id")
    row = conn.execute(query, {"source": source, "id": event_id}).mappings().first()
    return _event(row) if row else None


@dataclass(frozen=True, slots=True)
class StoredPayload:
    body: bytes | None
    """None once retention or an operator erased it."""
    content_type: str | None
    erased_at: datetime | None
    erase_reason: str | None


_PAYLOAD = sa.text(
    "SELECT payload, content_type, payload_erased_at, erase_reason FROM event_log"
    " WHERE source = :source AND event_id = :id"
)


def payload(conn: Connection, source: str, event_id: str) -> StoredPayload | None:
    row = conn.execute(_PAYLOAD, {"source": source, "id": event_id}).first()
    if row is None:
        return None
    body = None if row.payload is None else bytes(row.payload)
    return StoredPayload(body, row.content_type, row.payload_erased_at, row.erase_reason)


def _event(row: Any) -> Event:
    digest = row["body_sha256"]
    return Event(**{**row, "body_sha256": bytes(digest) if digest is not None else None})


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
