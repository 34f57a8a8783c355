"""Dead letters written straight into the table, thousands at a time, for replay tests and
benches: what the worker would have left behind, without paying for the failures."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine


def seed_dead_letters(engine: Engine, count: int, reason: str, prefix: str = "evt_v") -> None:
    """`count` Stripe `customer.created` events dead-lettered by the ledger worker with
    `reason`; event ids are `prefix` followed by 1..count."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO dead_letters (origin, subscription, message_id, source, event_id, "
                "event_type, data, attributes, error_message) "
                "SELECT 'worker', 'ledger', 'm' || n, 'stripe', :prefix || n, "
                """'customer.created', convert_to('{"type":"customer.created"}', 'UTF8'), """
                "jsonb_build_object('source', 'stripe', 'event_id', :prefix || n, "
                "'event_type', 'customer.created'), :reason "
                "FROM generate_series(1, :count) AS n"
            ),
            {"count": count, "reason": reason, "prefix": prefix},
        )
