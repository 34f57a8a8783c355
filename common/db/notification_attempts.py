"""Reads of `notification_attempts` (written by `outbox.record_attempt`), with the outbox row
each attempt delivered: what an operator checks when a receiver says it heard nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.db.conditions import where


@dataclass(frozen=True, slots=True)
class NotificationAttempt:
    id: int
    outbox_id: int
    kind: str
    outbox_state: str
    attempted_at: datetime
    url: str
    status: int | None
    error: str | None
    duration_ms: int


def for_account(
    conn: Connection, account_id: str, *, before_id: int | None, limit: int
) -> list[NotificationAttempt]:
    """Newest first, keyset on the attempt id: `before_id` is the last id of the previous
    page."""
    clause, params = where([("o.account_id = {}", account_id), ("a.id < {}", before_id)])
    query = sa.text(
        f"""
        SELECT a.id, a.outbox_id, o.kind, o.state AS outbox_state, a.attempted_at, a.url,
               a.status, a.error, a.duration_ms
        FROM notification_attempts AS a JOIN outbox AS o ON o.id = a.outbox_id
        WHERE {clause}
        ORDER BY a.id DESC
        LIMIT :limit
        """
    )
    rows = conn.execute(query, {**params, "limit": limit}).mappings()
    return [NotificationAttempt(**row) for row in rows]
