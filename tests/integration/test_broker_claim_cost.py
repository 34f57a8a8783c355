"""What a claim costs the database must not grow with the subscription's history: acked
deliveries stay in the table, and a claim that reached its rows through every delivery of
the subscription got slower with each message ever published (50 ms after 20,000). Counted
as rows the server's own plan threw away, never as time. No ANALYZE: the broker claims from
a table whose statistics lag behind it, and that is when the planner chose the bad join."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from common.topology import Subscription, Topic, Topology
from hookyard.broker import store
from hookyard.broker.store import NewMessage

pytestmark = pytest.mark.integration

SUBSCRIPTION = Subscription(name="busy", topic="busy", push_path="/push/busy")
TOPOLOGY = Topology(topics=[Topic(name="busy")], subscriptions=[SUBSCRIPTION])
LEASES = {"busy": 60.0}


def publish(engine: Engine, count: int) -> None:
    routed = [(NewMessage(b"x", {"n": str(n)}), [SUBSCRIPTION]) for n in range(count)]
    with engine.begin() as conn:
        store.publish(conn, "busy", routed)


def claim_and_ack_all(engine: Engine) -> None:
    while True:
        with engine.begin() as conn:
            claimed = store.claim(conn, LEASES, 500)
            if not claimed:
                return
            store.mark_acked(conn, [(d, 204) for d in claimed], [])


def rows_thrown_away(plan: Any) -> int:
    """Rows the plan's joins produced only to discard them, over every node. (Entries of
    rows acked since the last vacuum are another matter: vacuum's, and cheap to skip.)"""
    removed = int(plan.get("Rows Removed by Join Filter", 0))
    return removed + sum(rows_thrown_away(child) for child in plan.get("Plans", []))


def claim_cost(engine: Engine) -> int:
    """The claim as the broker runs it: a prepared statement, which PostgreSQL plans once
    for any parameters after a few runs (forced here, so the test need not run it five times)."""
    numbered = store._CLAIM.text.replace(":leases", "$1").replace(":limit", "$2")
    with engine.connect() as conn:
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        conn.exec_driver_sql(f"PREPARE claim(text, int) AS {numbered}")
        explained = conn.exec_driver_sql(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim('{json.dumps(LEASES)}', 16)"
        ).scalar_one()
        conn.rollback()  # EXPLAIN ANALYZE really claimed: leave the rows pending
        conn.exec_driver_sql("DEALLOCATE claim")
        conn.exec_driver_sql("RESET plan_cache_mode")
    document = explained if isinstance(explained, list) else json.loads(explained)
    return rows_thrown_away(document[0]["Plan"])


def test_a_claim_discards_no_more_rows_after_thousands_of_acked_messages(engine: Engine) -> None:
    with engine.begin() as conn:
        store.install(conn)
    publish(engine, 16)
    fresh = claim_cost(engine)
    claim_and_ack_all(engine)
    publish(engine, 3000)
    claim_and_ack_all(engine)
    publish(engine, 16)
    after_history = claim_cost(engine)
    assert after_history <= fresh + 16, (fresh, after_history)
