"""Messages handlers publish, kept with the effects that caused them until the broker has them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.db.inbox import EventKey


@dataclass(frozen=True, slots=True)
class Pending:
    id: int
    topic: str
    data: bytes
    attributes: dict[str, str]
    ordering_key: str


@dataclass(frozen=True, slots=True)
class NewMessage:
    topic: str
    data: bytes
    attributes: Mapping[str, str]
    ordering_key: str


_ADD = sa.text(
    """
    INSERT INTO outbound_messages (subscription, source, event_id, topic, data, attributes,
                                   ordering_key)
    SELECT :subscription, :source, :event_id, m.topic, m.data, m.attributes, m.ordering_key
    FROM unnest(CAST(:topics AS text[]), CAST(:datas AS bytea[]), CAST(:attrs AS jsonb[]),
                CAST(:keys AS text[])) WITH ORDINALITY AS m (topic, data, attributes,
                                                             ordering_key, n)
    ORDER BY m.n
    RETURNING id
    """
)
_PENDING = sa.text(
    """
    SELECT id, topic, data, attributes, ordering_key FROM outbound_messages
    WHERE id = ANY(:ids) AND published_at IS NULL ORDER BY id
    """
)
_STALE = sa.text(
    """
    SELECT id FROM outbound_messages
    WHERE published_at IS NULL AND created_at < now() - make_interval(secs => :age)
    ORDER BY created_at LIMIT :limit
    """
)
_MARK = sa.text(
    """
    UPDATE outbound_messages AS o SET published_at = now(), message_id = m.message_id
    FROM unnest(CAST(:ids AS bigint[]), CAST(:message_ids AS text[])) AS m (id, message_id)
    WHERE o.id = m.id AND o.published_at IS NULL
    """
)


def add(
    conn: Connection, subscription: str, key: EventKey, messages: Sequence[NewMessage]
) -> list[int]:
    """One statement for all of an event's messages; ids in the order given."""
    if not messages:
        return []
    rows = conn.execute(
        _ADD,
        {
            "subscription": subscription,
            "source": key.source,
            "event_id": key.event_id,
            "topics": [m.topic for m in messages],
            "datas": [m.data for m in messages],
            "attrs": [json.dumps(dict(m.attributes)) for m in messages],
            "keys": [m.ordering_key for m in messages],
        },
    )
    return [int(r.id) for r in rows]


def pending(conn: Connection, ids: Sequence[int]) -> list[Pending]:
    rows = conn.execute(_PENDING, {"ids": list(ids)}).mappings()
    return [
        Pending(
            id=int(r["id"]),
            topic=r["topic"],
            data=bytes(r["data"]),
            attributes=dict(r["attributes"]),
            ordering_key=r["ordering_key"],
        )
        for r in rows
    ]


def stale(conn: Connection, older_than_s: float, limit: int) -> list[int]:
    return [int(r.id) for r in conn.execute(_STALE, {"age": older_than_s, "limit": limit})]


def mark_published(conn: Connection, published: Mapping[int, str]) -> None:
    if published:
        conn.execute(_MARK, {"ids": list(published), "message_ids": list(published.values())})


_OLDEST_UNPUBLISHED = sa.text(
    "SELECT extract(epoch FROM now() - min(created_at)) FROM outbound_messages "
    "WHERE published_at IS NULL"
)


def oldest_unpublished_age_s(conn: Connection) -> float:
    """How long the oldest message not yet published has waited (0 when none)."""
    age = conn.execute(_OLDEST_UNPUBLISHED).scalar()
    return max(float(age), 0.0) if age is not None else 0.0
