"""Backlog figures from the local emulators, in the shape `/admin/stats` reports.

In GCP the same figures come from Cloud Monitoring (num_undelivered_messages,
oldest_unacked_message_age, the queue's task count); locally they are one query each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from common.topology import Topology

_SUBSCRIPTIONS = sa.text(
    """
    SELECT d.subscription,
           count(*) FILTER (WHERE d.state IN ('pending', 'inflight')) AS backlog,
           count(*) FILTER (WHERE d.state = 'inflight') AS in_flight,
           extract(epoch FROM now() - min(m.publish_time)
                   FILTER (WHERE d.state IN ('pending', 'inflight'))) AS oldest
    FROM emulator.deliveries AS d JOIN emulator.messages AS m ON m.id = d.message_id
    GROUP BY d.subscription
    """
)
_QUEUES = sa.text(
    """
    SELECT queue,
           count(*) FILTER (WHERE state IN ('pending', 'inflight')) AS backlog,
           count(*) FILTER (WHERE state = 'inflight') AS in_flight,
           extract(epoch FROM now() - min(create_time)
                   FILTER (WHERE state IN ('pending', 'inflight'))) AS oldest
    FROM emulator.tasks
    GROUP BY queue
    """
)


def emulator_backlog(engine: Engine, topology: Topology | None = None) -> dict[str, Any]:
    """Every subscription and queue the topology declares is reported, idle ones as zero:
    the tables only hold what has been delivered, and an operator looking for a queue must
    not have to guess whether its absence means idle or missing."""
    with engine.connect() as conn:
        subscriptions = {r.subscription: _figures(r) for r in conn.execute(_SUBSCRIPTIONS)}
        queues = {r.queue: _figures(r) for r in conn.execute(_QUEUES)}
    if topology is not None:
        for subscription in topology.subscriptions:
            subscriptions.setdefault(subscription.name, _idle())
        for queue in topology.queues:
            queues.setdefault(queue.name, _idle())
    return {"subscriptions": subscriptions, "queues": queues}


def _idle() -> dict[str, Any]:
    return {"backlog": 0, "in_flight": 0, "oldest_unacked_age_s": None}


def _figures(row: Any) -> dict[str, Any]:
    return {
        "backlog": int(row.backlog),
        "in_flight": int(row.in_flight),
        "oldest_unacked_age_s": round(float(row.oldest), 3) if row.oldest is not None else None,
    }
