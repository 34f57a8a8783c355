"""Replay runs: what an operator asked for and how far it got."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.db.conditions import where


@dataclass(frozen=True, slots=True)
class Replay:
    id: int
    state: str
    dry_run: bool
    total: int
    done: int
    failed: int
    max_per_second: float
    reason: str
    actor: str
    selection: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None


_COLUMNS = (
    "id, state, dry_run, total, done, failed, max_per_second, reason, actor, selection, "
    "created_at, finished_at"
)


def create(
    conn: Connection, *, max_per_second: float, reason: str, actor: str, selection: dict[str, Any]
) -> int:
    replay_id: int = conn.execute(
        sa.text(
            "INSERT INTO replays (total, max_per_second, reason, actor, selection) "
            "VALUES (0, :rate, :reason, :actor, CAST(:selection AS jsonb)) RETURNING id"
        ),
        {"rate": max_per_second, "reason": reason, "actor": actor,
         "selection": json.dumps(selection, default=str)},
    ).scalar_one()  # fmt: skip
    return replay_id


def set_total(conn: Connection, replay_id: int, total: int) -> None:
    state = "running" if total else "done"
    conn.execute(
        sa.text(
            "UPDATE replays SET total = :total, state = :state, "
            "finished_at = CASE WHEN :state = 'done' THEN now() END WHERE id = :id"
        ),
        {"id": replay_id, "total": total, "state": state},
    )


def get(conn: Connection, replay_id: int, *, lock: bool = False) -> Replay | None:
    suffix = " FOR UPDATE" if lock else ""
    row = (
        conn.execute(sa.text(f"SELECT {_COLUMNS} FROM replays WHERE id = :id{suffix}"),
                     {"id": replay_id})
        .mappings()
        .first()
    )  # fmt: skip
    return Replay(**row) if row else None


def progress(conn: Connection, replay_id: int, done: int, failed: int) -> None:
    conn.execute(
        sa.text("UPDATE replays SET done = done + :done, failed = failed + :failed WHERE id = :id"),
        {"id": replay_id, "done": done, "failed": failed},
    )


def finish(conn: Connection, replay_id: int, state: str) -> None:
    conn.execute(
        sa.text(
            "UPDATE replays SET state = :state, finished_at = now() "
            "WHERE id = :id AND state = 'running'"
        ),
        {"id": replay_id, "state": state},
    )


def list_page(
    conn: Connection, *, state: str | None, before_id: int | None, limit: int
) -> list[Replay]:
    """Newest first. `before_id` is the last id of the previous page: a keyset on the
    primary key, so replays started while an operator pages neither repeat nor shift."""
    clause, params = where([("state = {}", state), ("id < {}", before_id)])
    query = sa.text(f"SELECT {_COLUMNS} FROM replays WHERE {clause} ORDER BY id DESC LIMIT :limit")
    return [Replay(**row) for row in conn.execute(query, {**params, "limit": limit}).mappings()]
