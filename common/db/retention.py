"""Deletes of rows past their retention, one bounded batch per call.

Each function deletes at most `limit` rows and returns how many it did, so a caller runs
one short transaction per batch and stops at a short batch: no statement holds locks on a
month of rows, and a huge backlog drains over several calls instead of one timeout.
`SKIP LOCKED` leaves rows a live transaction is using for a later run.

Never touched: the ledger (transactions, postings, charges), dead letters, the inbox rows of
events a handler applied, and their event-log rows: both are the proof that the effects were
applied once, and stay as long as the effects. An event-log row outlives its payload, which
each source keeps for its own `retention_days`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

SETTLED_OUTBOX_STATES = ("delivered", "skipped", "disabled")

_INBOX = sa.text(
    """
    DELETE FROM inbox WHERE (subscription, source, event_id) IN (
        SELECT i.subscription, i.source, i.event_id FROM inbox AS i
        WHERE i.processed_at < :cutoff AND i.outcome <> 'applied'
          AND NOT EXISTS (
              SELECT 1 FROM ledger_transactions AS t
              WHERE t.subscription = i.subscription AND t.source = i.source
                AND t.event_id = i.event_id
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
              SELECT 1 FROM inbox AS i
              WHERE i.source = e.source AND i.event_id = e.event_id AND i.outcome = 'applied'
          )
        ORDER BY e.recorded_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    """
)
_ERASE_PAYLOADS = sa.text(
    """
    UPDATE event_log SET payload = NULL, payload_json = NULL, search = NULL,
                         headers = '{}', payload_erased_at = now(), erase_reason = 'retention'
    WHERE id IN (
        SELECT e.id FROM event_log AS e
        LEFT JOIN unnest(CAST(:sources AS text[]), CAST(:cutoffs AS timestamptz[]))
             AS c (source, cutoff) ON c.source = e.source
        WHERE e.payload IS NOT NULL
          AND e.received_at < coalesce(c.cutoff, :default_cutoff)
        ORDER BY e.received_at
        LIMIT :limit
        FOR UPDATE OF e SKIP LOCKED
    )
    """
)
_PUBLISHED_MESSAGES = sa.text(
    """
    DELETE FROM outbound_messages WHERE id IN (
        SELECT id FROM outbound_messages
        WHERE published_at < :cutoff
        ORDER BY published_at
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


def erase_payloads(
    conn: Connection, cutoffs: Mapping[str, datetime], default_cutoff: datetime, limit: int
) -> int:
    """Nulls the payload, its search columns and the kept headers of events received before
    their source's cutoff (`default_cutoff` for a source the topology no longer has)."""
    params = {
        "sources": list(cutoffs),
        "cutoffs": list(cutoffs.values()),
        "default_cutoff": default_cutoff,
        "limit": limit,
    }
    return conn.execute(_ERASE_PAYLOADS, params).rowcount


def delete_published_messages(conn: Connection, cutoff: datetime, limit: int) -> int:
    return conn.execute(_PUBLISHED_MESSAGES, {"cutoff": cutoff, "limit": limit}).rowcount


def delete_inbox(conn: Connection, cutoff: datetime, limit: int) -> int:
    """Inbox rows processed before `cutoff` whose event the handler did not apply."""
    return conn.execute(_INBOX, {"cutoff": cutoff, "limit": limit}).rowcount


def delete_event_log(conn: Connection, cutoff: datetime, limit: int) -> int:
    """Event-log rows recorded before `cutoff`, except those of events a handler applied:
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
