"""What the observable gauges read, from a real database: dead letters by state and masked
reason (one series for a reason however many accounts it names), outbox lag, and a backlog
provider that fails without taking the database figures with it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from common.metric_observations import figures_reader
from common.metrics import MAX_OBSERVED_SERIES
from tests.support.dead_letter_seeds import seed_dead_letters

ACCOUNTS = 250


def _failing_backlog() -> dict[str, Any]:
    raise RuntimeError("monitoring unreachable")


def test_reasons_are_masked_before_counting_and_the_series_stay_bounded(
    engine: Engine,
) -> None:
    # More distinct texts than the query keeps (200): only masked in SQL do they all count.
    for account in range(1, ACCOUNTS + 1):
        seed_dead_letters(engine, 1, f"unknown account 'acct_{account}'", f"evt_a{account}_")
    for n in range(MAX_OBSERVED_SERIES + 10):  # distinct even once masked
        seed_dead_letters(engine, 1, f"reason {chr(0x4E00 + n)}", f"evt_r{n}_")
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE dead_letters SET state = 'discarded' WHERE event_id = 'evt_a3_1'")
        )

    figures = figures_reader(lambda: engine, _failing_backlog)()

    assert figures.subscriptions == {}  # unreadable: left out, not reported as empty
    dead = figures.dead_letters
    assert dead[("pending", "unknown account '…'")] == ACCOUNTS - 1
    assert dead[("discarded", "unknown account '…'")] == 1
    assert len(dead) == MAX_OBSERVED_SERIES
    assert sum(dead.values()) == ACCOUNTS + MAX_OBSERVED_SERIES + 10
    assert dead[("pending", "other")] > 0
    assert figures.outbox_lag == {"notifications": 0.0, "messages": 0.0}


def test_outbox_lag_is_the_age_of_the_oldest_row_not_sent(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO accounts (id, currency) VALUES ('lag', 'usd');"
                "INSERT INTO outbox (account_id, kind, payload, created_at) "
                "VALUES ('lag', 'balance.updated', '{}', now() - interval '90 seconds')"
            )
        )
    figures = figures_reader(lambda: engine, lambda: {"subscriptions": {}, "queues": {}})()
    assert figures.outbox_lag["notifications"] >= 90
    assert figures.outbox_lag["messages"] == 0
