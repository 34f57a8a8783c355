"""Every statement the emulator runs against its `emulator` schema.

A delivery moves pending -> inflight (claimed, leased) -> acked | dead, or back to pending
after a failed attempt. Updates that settle a push are conditional on the claim they settle
(state inflight and the attempt count seen at claim time), so a result that arrives after
its lease ran out, and after another claimer took over, changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.resources import files
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.db.pg8000_dialect import prepared
from common.topology import Subscription

CHANNEL = "emulator_pubsub"
_INSTALL_LOCK_KEY = 727_273


@dataclass(frozen=True, slots=True)
class NewMessage:
    data: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)
    ordering_key: str = ""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One subscription's copy of a message as claimed; `attempts` counts failed attempts."""

    subscription: str
    message_id: int
    attempts: int
    topic: str
    data: bytes
    attributes: dict[str, str]
    ordering_key: str
    publish_time: datetime


def install(conn: Connection) -> None:
    """Idempotent, and serialized so brokers starting together do not race on DDL."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _INSTALL_LOCK_KEY})
    conn.exec_driver_sql(files(__package__).joinpath("schema.sql").read_text(encoding="utf-8"))


# One round trip for a whole publish request: ids are drawn in request order first, so the
# deliveries can name their message and ordering keys keep the order they were published in.
# The NOTIFY is sent by PostgreSQL only when the caller's transaction commits, so a woken
# dispatcher always finds the rows.
_PUBLISH = prepared("""
    WITH batch AS MATERIALIZED (
        SELECT nextval(pg_get_serial_sequence('emulator.messages', 'id')) AS id, u.n,
               u.data, u.attributes, u.ordering_key
        FROM unnest(CAST(:data AS bytea[]), CAST(:attributes AS text[]),
                    CAST(:ordering_keys AS text[]))
             WITH ORDINALITY AS u(data, attributes, ordering_key, n)
        ORDER BY u.n
    ), messages AS (
        INSERT INTO emulator.messages (id, topic, data, attributes, ordering_key)
        OVERRIDING SYSTEM VALUE
        SELECT id, :topic, data, CAST(attributes AS jsonb), ordering_key FROM batch
    ), deliveries AS (
        INSERT INTO emulator.deliveries (subscription, message_id, ordering_key)
        SELECT r.subscription, b.id, r.ordering_key
        FROM unnest(CAST(:route_n AS bigint[]), CAST(:route_subscription AS text[]),
                    CAST(:route_ordering_key AS text[])) AS r(n, subscription, ordering_key)
        JOIN batch AS b ON b.n = r.n
    )
    SELECT (SELECT array_agg(id ORDER BY n) FROM batch) AS ids,
           pg_notify(:channel, :topic) AS notified
""")


def publish(
    conn: Connection,
    topic: str,
    messages: Sequence[tuple[NewMessage, Sequence[Subscription]]],
) -> list[int]:
    """Stores each message with one delivery per subscription it routes to, in one statement,
    and notifies listening brokers on commit; returns the ids in the order given."""
    routes: list[tuple[int, str, str]] = [
        (n, sub.name, message.ordering_key if sub.enable_message_ordering else "")
        for n, (message, subscriptions) in enumerate(messages, start=1)
        for sub in subscriptions
    ]
    row = conn.execute(
        _PUBLISH,
        {
            "topic": topic,
            "channel": CHANNEL,
            "data": [m.data for m, _ in messages],
            "attributes": [json.dumps(dict(m.attributes)) for m, _ in messages],
            "ordering_keys": [m.ordering_key for m, _ in messages],
            "route_n": [n for n, _, _ in routes],
            "route_subscription": [name for _, name, _ in routes],
            "route_ordering_key": [key for _, _, key in routes],
        },
    ).one()
    return [int(i) for i in row.ids]


# A delivery with an ordering key waits while an earlier one of its key is still open.
# The OR keeps this a per-row subplan run only for keyed rows (on the ordering-head index):
# as a NOT EXISTS alone, the planner makes it an anti join that scans every earlier
# delivery of the subscription for each due row, acked history included.
_NOT_BLOCKED_BY_ORDERING = """
    (d.ordering_key = '' OR NOT EXISTS (
        SELECT 1 FROM emulator.deliveries AS e
        WHERE e.subscription = d.subscription
          AND e.ordering_key = d.ordering_key
          AND e.message_id < d.message_id
          AND e.state IN ('pending', 'inflight')
          AND e.ordering_key <> ''
    ))
"""

_NOT_PAUSED = """
    NOT EXISTS (
        SELECT 1 FROM emulator.push_backoff AS p
        WHERE p.subscription = d.subscription AND p.paused_until > now()
    )
"""

_MESSAGE_COLUMNS = "m.topic, m.data, m.attributes, m.ordering_key, m.publish_time"

_CLAIM = prepared(f"""
    WITH lease AS (
        SELECT key AS subscription, CAST(value AS double precision) AS seconds
        FROM jsonb_each_text(CAST(:leases AS jsonb))
    ), due AS (
        SELECT d.subscription, d.message_id, lease.seconds
        FROM emulator.deliveries AS d
        JOIN lease ON lease.subscription = d.subscription
        WHERE d.state = 'pending'
          AND d.due_at <= now()
          AND {_NOT_BLOCKED_BY_ORDERING}
          AND {_NOT_PAUSED}
        ORDER BY d.due_at, d.message_id
        LIMIT :limit
        FOR UPDATE OF d SKIP LOCKED
    )
    -- Joined on the whole primary key: with the lease joined here instead, the planner
    -- reached each row through every delivery of its subscription (a claim grew with the
    -- table's history, to 50 ms after 20,000 messages).
    UPDATE emulator.deliveries AS d
    SET state = 'inflight',
        due_at = now() + make_interval(secs => due.seconds),
        last_attempt_at = now()
    FROM due
    JOIN emulator.messages AS m ON m.id = due.message_id
    WHERE d.subscription = due.subscription AND d.message_id = due.message_id
    RETURNING d.subscription, d.message_id, d.attempts, {_MESSAGE_COLUMNS}
""")


def claim(conn: Connection, lease_seconds: Mapping[str, float], limit: int) -> list[Delivery]:
    """Leases up to `limit` due deliveries of the given subscriptions to the caller.

    SKIP LOCKED lets several brokers claim from one database without ever taking the same row.
    """
    if limit <= 0 or not lease_seconds:
        return []
    rows = conn.execute(_CLAIM, {"leases": json.dumps(dict(lease_seconds)), "limit": limit})
    return sorted((_delivery(row) for row in rows), key=lambda d: d.message_id)


_EXPIRED = prepared(f"""
    SELECT d.subscription, d.message_id, d.attempts, {_MESSAGE_COLUMNS}
    FROM emulator.deliveries AS d
    JOIN emulator.messages AS m ON m.id = d.message_id
    WHERE d.subscription = ANY(CAST(:subscriptions AS text[]))
      AND d.state = 'inflight' AND d.due_at <= now()
    ORDER BY d.due_at, d.message_id
    LIMIT :limit
    FOR UPDATE OF d SKIP LOCKED
""")


def expired_leases(conn: Connection, subscriptions: Sequence[str], limit: int) -> list[Delivery]:
    """Inflight deliveries whose holder never reported back; locked for the caller to settle."""
    if not subscriptions:
        return []
    rows = conn.execute(_EXPIRED, {"subscriptions": list(subscriptions), "limit": limit})
    return [_delivery(row) for row in rows]


_OF_CLAIM = (
    "WHERE subscription = :subscription AND message_id = :message_id "
    "AND state = 'inflight' AND attempts = :attempts"
)
_MARK_ACKED = prepared("""
    WITH acked AS (
        UPDATE emulator.deliveries AS d
        SET state = 'acked', last_status = a.status, last_error = NULL
        FROM unnest(CAST(:subscriptions AS text[]), CAST(:message_ids AS bigint[]),
                    CAST(:attempts AS integer[]), CAST(:statuses AS integer[]))
             AS a(subscription, message_id, attempts, status)
        WHERE d.subscription = a.subscription AND d.message_id = a.message_id
          AND d.state = 'inflight' AND d.attempts = a.attempts
        RETURNING d.subscription, d.message_id, d.attempts
    ), streaks AS (
        SELECT p.subscription
        FROM emulator.push_backoff AS p
        WHERE p.subscription = ANY(CAST(:streaks AS text[]))
          AND p.subscription IN (SELECT subscription FROM acked)
          AND p.streak > 0
        ORDER BY p.subscription
        FOR UPDATE
    ), ended AS (
        UPDATE emulator.push_backoff AS p SET streak = 0
        FROM streaks
        WHERE p.subscription = streaks.subscription
    )
    SELECT subscription, message_id, attempts FROM acked
""")
_MARK_RETRY = prepared(
    "UPDATE emulator.deliveries SET state = 'pending', attempts = attempts + 1, "
    "due_at = now() + make_interval(secs => :delay), last_status = :status, "
    f"last_error = :error {_OF_CLAIM}"
)
_MARK_DEAD = prepared(
    "UPDATE emulator.deliveries SET state = 'dead', attempts = attempts + 1, "
    f"last_status = :status, last_error = :error {_OF_CLAIM}"
)
_RELEASE = prepared(f"UPDATE emulator.deliveries SET state = 'pending', due_at = now() {_OF_CLAIM}")


def _claim_key(delivery: Delivery) -> dict[str, Any]:
    return {
        "subscription": delivery.subscription,
        "message_id": delivery.message_id,
        "attempts": delivery.attempts,
    }


def mark_acked(
    conn: Connection, acks: Sequence[tuple[Delivery, int]], end_streaks_of: Sequence[str]
) -> set[tuple[str, int, int]]:
    """Settles every (delivery, status) ack in one statement; returns the claims it settled,
    as (subscription, message_id, attempts). An ack of a claim whose lease ran out, and that
    another attempt took over, is not among them and changed nothing.

    An ack ends the nack streak of its subscription when that is in `end_streaks_of`; the
    streak rows are locked in name order, so brokers flushing at once cannot deadlock.
    """
    if not acks:
        return set()
    rows = conn.execute(
        _MARK_ACKED,
        {
            "subscriptions": [d.subscription for d, _ in acks],
            "message_ids": [d.message_id for d, _ in acks],
            "attempts": [d.attempts for d, _ in acks],
            "statuses": [status for _, status in acks],
            "streaks": list(end_streaks_of),
        },
    )
    return {(row.subscription, int(row.message_id), int(row.attempts)) for row in rows}


def mark_retry(
    conn: Connection, delivery: Delivery, delay_s: float, status: int | None, error: str | None
) -> bool:
    params = {**_claim_key(delivery), "delay": float(delay_s), "status": status, "error": error}
    return _updated(conn.execute(_MARK_RETRY, params))


def mark_dead(conn: Connection, delivery: Delivery, status: int | None, error: str | None) -> bool:
    params = {**_claim_key(delivery), "status": status, "error": error}
    return _updated(conn.execute(_MARK_DEAD, params))


def release(conn: Connection, delivery: Delivery) -> bool:
    """Gives back a claim that was never pushed, without counting an attempt."""
    return _updated(conn.execute(_RELEASE, _claim_key(delivery)))


# greatest() skips NULL: a subscription that was never paused waits for its rows only.
_SECONDS_UNTIL_DUE = prepared(f"""
    SELECT EXTRACT(EPOCH FROM min(
               CASE WHEN d.state = 'pending' THEN greatest(d.due_at, p.paused_until)
                    ELSE d.due_at END
           ) - clock_timestamp())
    FROM emulator.deliveries AS d
    LEFT JOIN emulator.push_backoff AS p ON p.subscription = d.subscription
    WHERE d.subscription = ANY(CAST(:subscriptions AS text[]))
      AND d.state IN ('pending', 'inflight')
      AND {_NOT_BLOCKED_BY_ORDERING}
""")


def seconds_until_due(conn: Connection, subscriptions: Sequence[str]) -> float | None:
    """Until the next retry, end of a push backoff or lease expiry, by the database clock;
    None when nothing is open.

    Deliveries held back by ordering are left out: their head's own due time is what counts.
    """
    if not subscriptions:
        return None
    value = conn.execute(_SECONDS_UNTIL_DUE, {"subscriptions": list(subscriptions)}).scalar()
    return None if value is None else float(value)


_NACKED = sa.text("""
    INSERT INTO emulator.push_backoff AS p (subscription, streak) VALUES (:subscription, 1)
    ON CONFLICT (subscription) DO UPDATE SET streak = p.streak + 1
    RETURNING p.streak
""")
_PAUSE = sa.text("""
    UPDATE emulator.push_backoff
    SET paused_at = now(), paused_until = now() + make_interval(secs => :pause_s)
    WHERE subscription = :subscription
""")


def pause_after_nack(conn: Connection, subscription: str, pause_s: Callable[[int], float]) -> None:
    """Counts a nack in the subscription's streak and stops its pushes for `pause_s(streak)`.

    The row lock serialises concurrent nacks of one subscription, so each sees its own streak.
    """
    streak = int(conn.execute(_NACKED, {"subscription": subscription}).scalar_one())
    conn.execute(_PAUSE, {"subscription": subscription, "pause_s": float(pause_s(streak))})


def pending_count(conn: Connection, subscription: str | None = None) -> int:
    query = "SELECT count(*) FROM emulator.deliveries WHERE state IN ('pending', 'inflight')"
    if subscription is None:
        return int(conn.execute(sa.text(query)).scalar_one())
    query += " AND subscription = :subscription"
    return int(conn.execute(sa.text(query), {"subscription": subscription}).scalar_one())


def _delivery(row: sa.Row[Any]) -> Delivery:
    return Delivery(
        subscription=row.subscription,
        message_id=int(row.message_id),
        attempts=int(row.attempts),
        topic=row.topic,
        data=bytes(row.data),
        attributes=dict(row.attributes or {}),
        ordering_key=row.ordering_key,
        publish_time=row.publish_time,
    )


def _updated(result: sa.CursorResult[Any]) -> bool:
    return result.rowcount == 1
