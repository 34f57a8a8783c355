"""Reads of `notification_attempts` (written by `outbox.record_attempt`), with the outbox row
each attempt delivered: what an operator checks when a receiver says it heard nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


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
    params: dict[str, Any] = {"account_id": account_id, "limit": limit}
    keyset = ""
    if before_id is not None:
        keyset = "AND a.id < :before_id"
        params["before_id"] = before_id
    query = sa.text(
        f"""
        SELECT a.id, a.outbox_id, o.kind, o.state AS outbox_state, a.attempted_at, a.url,
               a.status, a.error, a.duration_ms
        FROM notification_attempts AS a JOIN outbox AS o ON o.id = a.outbox_id
        WHERE o.account_id = :account_id {keyset}
        ORDER BY a.id DESC
        LIMIT :limit
        """
    )
    return [NotificationAttempt(**row) for row in conn.execute(query, params).mappings()]
