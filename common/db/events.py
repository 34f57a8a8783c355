"""Events as operators look them up: the event log, searched; what each handler made of an
event (inbox rows, dead letters, delivery failures); the ledger rows they caused; erasure.

A page costs four queries whatever its size: the page, then the inbox rows, the dead letters
and the delivery failures of all its events at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.db.event_search import (
    DeadLetterRecord,
    EventQuery,
    FailureRecord,
    InboxRecord,
    Records,
    where,
)
from common.topology import Handler


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
    headers: dict[str, str]
    payload_erased_at: datetime | None
    erase_reason: str | None


_COLUMNS = """
    e.id, e.source, e.event_id, e.event_type, e.received_at, e.recorded_at, e.content_type,
    e.body_sha256, e.body_bytes, e.message_id, e.headers, e.payload_erased_at, e.erase_reason
"""


def search(conn: Connection, query: EventQuery, handlers: Sequence[Handler]) -> list[Event]:
    """Up to `query.limit` events in id order (descending when asked), after the cursor."""
    clause, params = where(query, handlers)
    order = "DESC" if query.descending else "ASC"
    statement = sa.text(
        f"SELECT {_COLUMNS} FROM event_log AS e WHERE {clause} ORDER BY e.id {order} LIMIT :limit"
    )
    rows = conn.execute(statement, {**params, "limit": query.limit}).mappings()
    return [_event(row) for row in rows]


def get(conn: Connection, source: str, event_id: str) -> Event | None:
    query = sa.text(
        f"SELECT {_COLUMNS} FROM event_log AS e WHERE e.source = :source AND e.event_id = :id"
    )
    row = conn.execute(query, {"source": source, "id": event_id}).mappings().first()
    return _event(row) if row else None


_INBOX = sa.text(
    "SELECT e.id AS log_id, i.subscription, i.outcome, i.effects, i.processed_at"
    " FROM event_log AS e JOIN inbox AS i ON i.source = e.source AND i.event_id = e.event_id"
    " WHERE e.id = ANY(:ids) AND i.subscription = ANY(:names)"
)
_DEAD = """
    SELECT e.id AS log_id, d.subscription, d.id, d.state, d.error_message, d.delivery_count
    FROM event_log AS e JOIN dead_letters AS d ON d.source = e.source AND d.event_id = e.event_id
    WHERE e.id = ANY(:ids) AND d.subscription = ANY(:names) {pending}
    ORDER BY d.id
"""
_FAILURES = sa.text(
    "SELECT e.id AS log_id, f.subscription, f.attempts, f.error_class, f.error_message"
    " FROM event_log AS e JOIN delivery_failures AS f"
    " ON f.message_id = e.source || '/' || e.event_id"
    " WHERE e.id = ANY(:ids) AND f.subscription = ANY(:names)"
)


def records(
    conn: Connection, log_ids: Sequence[int], handlers: Sequence[str], *, pending_only: bool
) -> dict[int, Records]:
    """Per event-log id, what the handlers left about it. A list needs only the pending dead
    letters (the outcome); one event's detail shows every dead letter it ever had."""
    if not log_ids or not handlers:
        return {}
    params = {"ids": list(log_ids), "names": list(handlers)}
    inbox: dict[int, list[InboxRecord]] = defaultdict(list)
    for r in conn.execute(_INBOX, params):
        inbox[r.log_id].append(InboxRecord(r.subscription, r.outcome, r.effects, r.processed_at))
    dead: dict[int, list[DeadLetterRecord]] = defaultdict(list)
    pending = "AND d.state = 'pending'" if pending_only else ""
    for r in conn.execute(sa.text(_DEAD.format(pending=pending)), params):
        dead[r.log_id].append(
            DeadLetterRecord(r.subscription, r.id, r.state, r.error_message, r.delivery_count)
        )
    failures: dict[int, list[FailureRecord]] = defaultdict(list)
    for r in conn.execute(_FAILURES, params):
        error = f"{r.error_class}: {r.error_message}" if r.error_message else r.error_class
        failures[r.log_id].append(FailureRecord(r.subscription, r.attempts, error))
    return {
        log_id: Records(inbox.get(log_id, ()), dead.get(log_id, ()), failures.get(log_id, ()))
        for log_id in log_ids
    }


@dataclass(frozen=True, slots=True)
class StoredPayload:
    body: bytes | None
    """None once retention or an operator erased it."""
    content_type: str | None
    erased_at: datetime | None
    erase_reason: str | None
    document: Any = None
    """The payload as JSON (jsonb), when it has that shape and is still kept."""


_PAYLOAD = sa.text(
    "SELECT payload, payload_json, content_type, payload_erased_at, erase_reason FROM event_log"
    " WHERE source = :source AND event_id = :id"
)


def payload(conn: Connection, source: str, event_id: str) -> StoredPayload | None:
    row = conn.execute(_PAYLOAD, {"source": source, "id": event_id}).first()
    if row is None:
        return None
    body = None if row.payload is None else bytes(row.payload)
    return StoredPayload(
        body, row.content_type, row.payload_erased_at, row.erase_reason, row.payload_json
    )


@dataclass(frozen=True, slots=True)
class Erased:
    erased: bool
    """False when the payload was already gone (erased before, or by retention)."""
    dead_letters: list[int]
    """Pending dead letters blanked and discarded: they held a copy of the payload."""


_LOCK = sa.text(
    "SELECT payload_erased_at IS NOT NULL AS gone FROM event_log"
    " WHERE source = :source AND event_id = :id FOR UPDATE"
)
_ERASE = sa.text(
    "UPDATE event_log SET payload = NULL, payload_json = NULL, search = NULL, headers = '{}',"
    " payload_erased_at = now(), erase_reason = :reason"
    " WHERE source = :source AND event_id = :id"
)
# The dead letter's attributes carry the kept sender headers (`header.*`) too.
_DISCARD_COPIES = sa.text(
    """
    UPDATE dead_letters SET data = '', state = 'discarded',
        attributes = coalesce((SELECT jsonb_object_agg(key, value) FROM jsonb_each(attributes)
                               WHERE key NOT LIKE 'header.%'), '{}')
    WHERE source = :source AND event_id = :id AND state = 'pending'
    RETURNING id
    """
)


def erase(conn: Connection, source: str, event_id: str, reason: str) -> Erased | None:
    """Nulls the payload, its search columns and the headers, and discards the pending dead
    letters' copies; the row itself, the inbox and the ledger stay as proof of processing.
    None when there is no such event. Call inside the caller's transaction."""
    row = conn.execute(_LOCK, {"source": source, "id": event_id}).first()
    if row is None:
        return None
    if row.gone:
        return Erased(False, [])
    params = {"source": source, "id": event_id}
    conn.execute(_ERASE, {**params, "reason": reason})
    discarded = [int(r.id) for r in conn.execute(_DISCARD_COPIES, params)]
    return Erased(True, sorted(discarded))


def _event(row: Any) -> Event:
    digest = row["body_sha256"]
    return Event(
        **{
            **row,
            "body_sha256": bytes(digest) if digest is not None else None,
            "headers": dict(row["headers"] or {}),
        }
    )


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
