"""The operator audit trail: who did what to which dead letters, and why."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

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
