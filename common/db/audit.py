"""The operator audit trail: who did what to which dead letters, replays and events, and why."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.db.conditions import where

_RECORD = sa.text(
    """
    INSERT INTO operator_actions (actor, token_fingerprint, action, reason, params, result)
    VALUES (:actor, :fingerprint, :action, :reason, CAST(:params AS jsonb),
            CAST(:result AS jsonb))
    RETURNING id
    """
)


def record(
    conn: Connection,
    *,
    actor: str,
    fingerprint: str,
    action: str,
    reason: str,
    params: dict[str, Any],
    result: dict[str, Any],
) -> int:
    action_id: int = conn.execute(
        _RECORD,
        {"actor": actor, "fingerprint": fingerprint, "action": action, "reason": reason,
         "params": json.dumps(params, default=str), "result": json.dumps(result, default=str)},
    ).scalar_one()  # fmt: skip
    return action_id


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded action. The token fingerprint stays in the table: it is derived from a
    credential, so nothing that reads the trail back carries it."""

    id: int
    at: datetime
    actor: str
    action: str
    reason: str
    params: dict[str, Any]
    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Every field narrows (exact `action` and `actor`; `since` inclusive, `until` not)."""

    action: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None


def list_page(conn: Connection, selection: AuditFilter, limit: int) -> list[AuditEntry]:
    """Newest first, keyset on the id: `before_id` is the last id of the previous page."""
    clause, params = where(
        [
            ("action = {}", selection.action),
            ("actor = {}", selection.actor),
            ("created_at >= {}", selection.since),
            ("created_at < {}", selection.until),
            ("id < {}", selection.before_id),
        ]
    )
    query = sa.text(
        "SELECT id, created_at AS at, actor, action, reason, params, result "
        f"FROM operator_actions WHERE {clause} ORDER BY id DESC LIMIT :limit"
    )
    rows = conn.execute(query, {**params, "limit": limit}).mappings()
    return [AuditEntry(**row) for row in rows]
