"""Dead letters: every message that will not be applied as delivered, kept whole for replay.

Both paths write here: the worker's permanent errors and the broker's forwards after
`max_delivery_attempts`. A row is one problem, not one message: failures of the same event
and error fold into it (`record`). Selection by filter is shared by listing, replay and discard, so
an operator's `--filter` means the same thing everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from common.storable import parse_bounded_int, scrub, scrub_mapping

Origin = Literal["worker", "broker"]
REPLAY_OF = "hookyard_replay_of"
REPLAY_ID = "hookyard_replay_id"
MAX_DELIVERY_COUNT = 2**31 - 1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    origin: str
    subscription: str
    message_id: str
    source: str | None
    event_id: str | None
    event_type: str | None
    data: bytes
    attributes: dict[str, str]
    delivery_count: int
    error_class: str | None
    error_message: str | None
    state: str
    first_failed_at: datetime
    last_failed_at: datetime
    failure_count: int
    replay_id: int | None = None
    replay_of: int | None = None


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters an operator means; every field narrows, none means all."""

    ids: tuple[int, ...] | None = None
    source: str | None = None
    type: str | None = None
    subscription: str | None = None
    reason: str | None = None
    state: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def where(self) -> tuple[str, dict[str, Any]]:
        clauses = ["TRUE"]
        params: dict[str, Any] = {}
        for column, value in (
            ("source", self.source),
            ("event_type", self.type),
            ("subscription", self.subscription),
            ("state", self.state),
        ):
            if value is not None:
                clauses.append(f"{column} = :{column}")
                params[column] = value
        if self.ids is not None:
            clauses.append("id = ANY(:ids)")
            params["ids"] = list(self.ids)
        if self.reason is not None:
            clauses.append("strpos(lower(coalesce(error_message, '')), lower(:reason)) > 0")
            params["reason"] = self.reason
        if self.since is not None:
            clauses.append("last_failed_at >= :since")
            params["since"] = self.since
        if self.until is not None:
            clauses.append("last_failed_at < :until")
            params["until"] = self.until
        if self.after_id is not None:
            clauses.append("id > :after_id")
            params["after_id"] = self.after_id
        return " AND ".join(clauses), params


_COLUMNS = (
    "id, origin, subscription, message_id, source, event_id, event_type, data, attributes, "
    "delivery_count, error_class, error_message, state, first_failed_at, last_failed_at, "
    "failure_count, replay_id, replay_of"
)

_INSERT = """
    INSERT INTO dead_letters (origin, subscription, message_id, source, event_id, event_type,
                              data, attributes, delivery_count, error_class, error_message,
                              replay_of, first_failed_at)
    VALUES (:origin, :subscription, :message_id, :source, :event_id, :event_type,
            :data, CAST(:attributes AS jsonb), :delivery_count, :error_class, :error_message,
            (SELECT id FROM dead_letters WHERE id = :replay_of), coalesce(:first_failed_at, now()))
"""
# The arbiters are the partial unique indexes of migration 0006, predicates included.
_BY_EVENT = """
    ON CONFLICT (subscription, source, event_id, (coalesce(error_class, '')))
        WHERE state = 'pending' AND source IS NOT NULL AND event_id IS NOT NULL
"""
_BY_MESSAGE = """
    ON CONFLICT (subscription, message_id)
        WHERE state = 'pending' AND (source IS NULL OR event_id IS NULL)
"""
_FOLD = """
    DO UPDATE SET
        failure_count = dead_letters.failure_count + 1,
        first_failed_at = LEAST(dead_letters.first_failed_at, EXCLUDED.first_failed_at),
        last_failed_at = GREATEST(dead_letters.last_failed_at, now()),
        delivery_count = GREATEST(dead_letters.delivery_count, EXCLUDED.delivery_count),
        replay_of = coalesce(dead_letters.replay_of, EXCLUDED.replay_of),
        origin = EXCLUDED.origin,
        message_id = EXCLUDED.message_id,
        event_type = EXCLUDED.event_type,
        data = EXCLUDED.data,
        attributes = EXCLUDED.attributes,
        error_class = EXCLUDED.error_class,
        error_message = EXCLUDED.error_message
    RETURNING id
"""
_RECORD_BY_EVENT = sa.text(_INSERT + _BY_EVENT + _FOLD)
_RECORD_BY_MESSAGE = sa.text(_INSERT + _BY_MESSAGE + _FOLD)


def record(
    conn: Connection,
    *,
    origin: Origin,
    subscription: str,
    message_id: str,
    data: bytes,
    attributes: Mapping[str, str],
    delivery_count: int,
    error_class: str | None,
    error_message: str | None,
    first_failed_at: datetime | None = None,
) -> int:
    """Folds a failure into the pending dead letter of its problem, or starts one.

    The problem is the event and the error class (subscription, source, event id, class):
    a sender's retry storm is one row whose `failure_count` grows, and a different error is
    a second row. A message that names no event (poison bytes, a task) is its own problem,
    per (subscription, message id).

    Only a `pending` row absorbs failures. Once a row is replaying, replayed or discarded an
    operator has acted on it, so a later failure is a new pending row: folding it into a
    replaying row would let the replay mark it replayed unseen, and reopening a replayed one
    would rewrite the history that `replay_of` links and a replay's counts point at. A
    replayed message carries `hookyard_replay_of`, so its failure links to the row it came
    from.

    The row keeps the latest failing message whole (bytes, attributes, message id, error),
    first seen and last seen: the reason shown is about the bytes shown, and a replay
    republishes the payload as the sender last sent it. Text is scrubbed of what PostgreSQL
    cannot hold (the bytes stay exact), so a message refused for such content can still be
    kept.
    """
    attrs = scrub_mapping(attributes)
    source, event_id = attrs.get("source") or None, attrs.get("event_id") or None
    statement = _RECORD_BY_EVENT if source and event_id else _RECORD_BY_MESSAGE
    dead_letter_id: int = conn.execute(
        statement,
        {
            "origin": origin,
            "subscription": scrub(subscription),
            "message_id": scrub(message_id),
            "source": source,
            "event_id": event_id,
            "event_type": attrs.get("event_type"),
            "data": data,
            "attributes": json.dumps(attrs),
            "delivery_count": min(max(delivery_count, 0), MAX_DELIVERY_COUNT),
            "error_class": scrub(error_class) if error_class else None,
            "error_message": scrub(error_message or "")[:2000] or None,
            "replay_of": parse_bounded_int(attrs.get(REPLAY_OF, "")),
            "first_failed_at": first_failed_at,
        },
    ).scalar_one()
    return dead_letter_id


def list_page(conn: Connection, selection: Selection, limit: int = 100) -> list[DeadLetter]:
    where, params = selection.where()
    query = sa.text(f"SELECT {_COLUMNS} FROM dead_letters WHERE {where} ORDER BY id LIMIT :limit")
    return [_row(r) for r in conn.execute(query, {**params, "limit": limit}).mappings()]


def get(conn: Connection, dead_letter_id: int) -> DeadLetter | None:
    query = sa.text(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = :id")
    row = conn.execute(query, {"id": dead_letter_id}).mappings().first()
    return _row(row) if row else None


def count(conn: Connection, selection: Selection) -> int:
    where, params = selection.where()
    query = sa.text(f"SELECT count(*) FROM dead_letters WHERE {where}")
    return int(conn.execute(query, params).scalar_one())


def claim_for_replay(conn: Connection, selection: Selection, replay_id: int) -> int:
    """Moves the selected pending rows to `replaying` under this replay; returns how many."""
    where, params = selection.where()
    query = sa.text(
        f"UPDATE dead_letters SET state = 'replaying', replay_id = :replay_id "
        f"WHERE {where} AND state = 'pending'"
    )
    return int(conn.execute(query, {**params, "replay_id": replay_id}).rowcount)


def next_to_replay(conn: Connection, replay_id: int, limit: int) -> list[DeadLetter]:
    query = sa.text(
        f"SELECT {_COLUMNS} FROM dead_letters WHERE replay_id = :replay_id AND state = 'replaying' "
        "ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
    )
    rows = conn.execute(query, {"replay_id": replay_id, "limit": limit}).mappings()
    return [_row(r) for r in rows]


def mark_replayed(conn: Connection, ids: Sequence[int]) -> None:
    conn.execute(
        sa.text("UPDATE dead_letters SET state = 'replayed' WHERE id = ANY(:ids)"),
        {"ids": list(ids)},
    )


def release_replay(conn: Connection, replay_id: int) -> int:
    """A cancelled replay leaves what it had not reached `pending`, as before."""
    result = conn.execute(
        sa.text(
            "UPDATE dead_letters SET state = 'pending', replay_id = NULL "
            "WHERE replay_id = :replay_id AND state = 'replaying'"
        ),
        {"replay_id": replay_id},
    )
    return int(result.rowcount)


def release_ids(conn: Connection, ids: Sequence[int]) -> None:
    """Rows a batch could not republish go back to `pending` for a later replay."""
    conn.execute(
        sa.text(
            "UPDATE dead_letters SET state = 'pending', replay_id = NULL "
            "WHERE id = ANY(:ids) AND state = 'replaying'"
        ),
        {"ids": list(ids)},
    )


def missing(conn: Connection, ids: Sequence[int]) -> list[int]:
    """The ids no dead letter has, in order: named ones that do not exist are refused
    before anything is changed, so a typo cannot pass for "already handled"."""
    query = sa.text(
        "SELECT given.id FROM unnest(CAST(:ids AS bigint[])) AS given(id) "
        "WHERE NOT EXISTS (SELECT 1 FROM dead_letters AS d WHERE d.id = given.id) "
        "ORDER BY given.id"
    )
    return [int(found) for found in conn.execute(query, {"ids": list(ids)}).scalars()]


def discard(conn: Connection, selection: Selection) -> int:
    where, params = selection.where()
    query = sa.text(
        f"UPDATE dead_letters SET state = 'discarded' WHERE {where} AND state = 'pending'"
    )
    return int(conn.execute(query, params).rowcount)


def stats(conn: Connection, top: int = 20) -> dict[str, Any]:
    """Counts rows, each one problem for an operator; `failures` adds up what folded in."""
    states = conn.execute(
        sa.text(
            "SELECT state, count(*) AS n, sum(failure_count) AS failures "
            "FROM dead_letters GROUP BY 1"
        )
    ).all()
    by_reason = conn.execute(
        sa.text(
            "SELECT subscription, coalesce(error_message, '') AS reason, count(*) AS n, "
            "sum(failure_count) AS failures "
            "FROM dead_letters WHERE state = 'pending' GROUP BY 1, 2 ORDER BY n DESC LIMIT :top"
        ),
        {"top": top},
    ).all()
    return {
        "by_state": {r.state: int(r.n) for r in states},
        "failures_by_state": {r.state: int(r.failures) for r in states},
        "by_reason": [
            {
                "subscription": r.subscription,
                "reason": r.reason,
                "count": int(r.n),
                "failures": int(r.failures),
            }
            for r in by_reason
        ],
    }


_BY_STATE_AND_REASON = sa.text(
    """
    SELECT state,
           regexp_replace(regexp_replace(coalesce(error_message, ''), :quoted, :quoted_as, 'g'),
                          :numbers, :numbers_as, 'g') AS reason,
           count(*) AS n
    FROM dead_letters GROUP BY 1, 2 ORDER BY n DESC LIMIT :top
    """
)


def counts_by_state_and_reason(
    conn: Connection, masks: tuple[tuple[str, str], tuple[str, str]], top: int = 200
) -> list[tuple[str, str, int]]:
    """Rows per state and reason, the reason's quoted values and then its numbers replaced as
    `masks` say (regex, replacement), so one reason for many accounts counts as one; `top`
    bounds the result."""
    (quoted, quoted_as), (numbers, numbers_as) = masks
    params = {"quoted": quoted, "quoted_as": quoted_as, "numbers": numbers,
              "numbers_as": numbers_as, "top": top}  # fmt: skip
    rows = conn.execute(_BY_STATE_AND_REASON, params)
    return [(r.state, r.reason, int(r.n)) for r in rows]


def _row(row: RowMapping) -> DeadLetter:
    values = dict(row)
    values["data"] = bytes(values["data"])
    return DeadLetter(**values)
