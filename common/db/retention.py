"""Deletes of rows past their retention, one bounded batch per call.

Each function deletes at most `limit` rows and returns how many it did, so a caller runs
one short transaction per batch and stops at a short batch: no statement holds locks on a
month of rows, and a huge backlog drains over several calls instead of one timeout.
`SKIP LOCKED` leaves rows a live transaction is using for a later run.

Never touched: the ledger (transactions, postings, charges), dead letters, and inbox and
event-log rows a ledger transaction references (the foreign key would refuse the inbox
delete; both rows are the proof that the effect was applied once).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

SETTLED_OUTBOX_STATES = ("delivered", "skipped", "disabled")

_INBOX = sa.text(
    """
    DELETE FROM inbox WHERE (source, event_id) IN (
        SELECT i.source, i.event_id FROM inbox AS i
        WHERE i.processed_at < :cutoff
          AND NOT EXISTS (
              SELECT 1 FROM ledger_transactions AS t
              WHERE t.source = i.source AND t.event_id = i.event_id
          )
        ORDER BY i.processed_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    """
)
_EVENT_LOG = sa.text(
    """
    DELETE FROM event_log WHERE id IN (
        SELECT e.id FROM event_log AS e
        WHERE e.recorded_at < :cutoff
          AND NOT EXISTS (
              SELECT 1 FROM ledger_transactions AS t
              WHERE t.source = e.source AND t.event_id = e.event_id
          )
        ORDER BY e.recorded_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    """
)
_SETTLED_OUTBOX = sa.text(
    """
    SELECT id FROM outbox
    WHERE state IN ('delivered', 'skipped', 'disabled') AND created_at < :cutoff
    ORDER BY created_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
    """
)
_ATTEMPTS = sa.text("DELETE FROM notification_attempts WHERE outbox_id = ANY(:ids)")
_OUTBOX = sa.text("DELETE FROM outbox WHERE id = ANY(:ids)")
_DELIVERY_FAILURES = sa.text(
    """
    DELETE FROM delivery_failures WHERE (subscription, message_id) IN (
        SELECT subscription, message_id FROM delivery_failures
        WHERE last_failed_at < :cutoff
        ORDER BY last_failed_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    """
)


def delete_inbox(conn: Connection, cutoff: datetime, limit: int) -> int:
    """Inbox rows processed before `cutoff` that no ledger transaction references."""
    return conn.execute(_INBOX, {"cutoff": cutoff, "limit": limit}).rowcount


def delete_event_log(conn: Connection, cutoff: datetime, limit: int) -> int:
    """Event-log rows recorded before `cutoff`, except those of events the ledger applied:
    like their inbox rows, they stay as long as the effects."""
    return conn.execute(_EVENT_LOG, {"cutoff": cutoff, "limit": limit}).rowcount


def delete_settled_outbox(conn: Connection, cutoff: datetime, limit: int) -> int:
    """Delivered, skipped or disabled outbox rows created before `cutoff`, attempts first
    (they reference the row). Pending and failed rows stay: someone may still act on them."""
    ids = [int(r.id) for r in conn.execute(_SETTLED_OUTBOX, {"cutoff": cutoff, "limit": limit})]
    if ids:
        conn.execute(_ATTEMPTS, {"ids": ids})
        conn.execute(_OUTBOX, {"ids": ids})
    return len(ids)


def delete_delivery_failures(conn: Connection, cutoff: datetime, limit: int) -> int:
    return conn.execute(_DELIVERY_FAILURES, {"cutoff": cutoff, "limit": limit}).rowcount
