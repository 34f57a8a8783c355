"""What a delivery to the ledger (and to the event log) costs the database, counted as
statements (SQLAlchemy's view) and as round trips on the wire (which also sees BEGIN, COMMIT
and any ping), on a connection that has served deliveries before, as a busy worker's have."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from common.config import Settings
from common.db import accounts
from common.db.engine import create_db_engine
from tests.support.pg_wire import RoundTripCounter
from tests.support.pushes import ledger_push
from tests.support.stack import stripe_event
from workers.push import Worker

NOTIFY_URL = "https://receiver.example/hooks"


class Statements:
    """The statements sent and how each transaction ended, in order."""

    def __init__(self, engine: Engine) -> None:
        self.log: list[str] = []
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        sa.event.listen(engine, "commit", lambda _conn: self.log.append("COMMIT"))
        sa.event.listen(engine, "rollback", lambda _conn: self.log.append("ROLLBACK"))

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.log.append(" ".join(statement.split())[:40])

    def first_transaction(self) -> list[str]:
        ends = [i for i, entry in enumerate(self.log) if entry in ("COMMIT", "ROLLBACK")]
        return self.log[: ends[0] + 1]


@pytest.fixture
def engine(wire: RoundTripCounter) -> Iterator[Engine]:
    eng = create_db_engine(Settings(db_pool_size=1, db_max_overflow=0), wire.url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def worker(engine: Engine) -> Worker:
    with engine.begin() as conn:
        accounts.create(conn, "acct", "usd", NOTIFY_URL)
        accounts.create(conn, "quiet", "usd", None)
    worker = Worker(engine)
    for account in ("acct", "quiet"):  # the connection has prepared what deliveries use
        worker.deliver("ledger", payment(f"warm-{account}", account, 1))
    return worker


def payment(event_id: str, account: str, amount: int, currency: str = "usd") -> Any:
    body = stripe_event(event_id, "payment_intent.succeeded", account, currency,
                        amount_received=amount)  # fmt: skip
    return ledger_push(event_id, body)


def payout(event_id: str, account: str, amount: int) -> Any:
    return ledger_push(event_id, stripe_event(event_id, "payout.paid", account, amount=amount))


def outbox_payloads(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT payload FROM outbox ORDER BY id")).scalars().all()
    return [row if isinstance(row, dict) else json.loads(row) for row in rows]


def inbox_has(engine: Engine, event_id: str) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                sa.text("SELECT EXISTS (SELECT FROM inbox WHERE event_id = :e)"), {"e": event_id}
            ).scalar_one()
        )


def dead_letter_reasons(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(sa.text("SELECT error_message FROM dead_letters ORDER BY id")).scalars()
        )


def test_a_first_payment_is_one_statement_and_three_round_trips(
    worker: Worker, engine: Engine, wire: RoundTripCounter
) -> None:
    statements = Statements(engine)
    with wire.counting() as made:
        worker.deliver("ledger", payment("evt_1", "acct", 2500))
    assert made == [3]  # BEGIN, the statement, COMMIT
    assert statements.log == ["WITH claim AS ( INSERT INTO inbox (sourc", "COMMIT"]

    with engine.connect() as conn:
        found = accounts.get(conn, "acct")
        assert found is not None
        assert (found.available, found.held) == (2501, 0)
        postings = conn.execute(
            sa.text(
                "SELECT p.ledger_account, p.amount, p.currency, t.kind FROM postings p "
                "JOIN ledger_transactions t ON t.id = p.transaction_id "
                "WHERE t.event_id = 'evt_1' ORDER BY p.amount"
            )
        ).all()
    assert [tuple(p) for p in postings] == [
        ("platform:clearing", -2500, "usd", "payment"),
        ("account:acct:available", 2500, "usd", "payment"),
    ]
    assert outbox_payloads(engine)[-1] == {
        "type": "balance.updated", "account_id": "acct", "currency": "usd",
        "available": 2501, "held": 0, "caused_by": "evt_1",
    }  # fmt: skip


def test_a_payout_announces_the_balance_after_it(worker: Worker, engine: Engine) -> None:
    statements = Statements(engine)
    worker.deliver("ledger", payment("evt_in", "acct", 1000))
    worker.deliver("ledger", payout("evt_out", "acct", 400))
    assert len(statements.log) == 4  # one statement and a COMMIT each
    assert [p["available"] for p in outbox_payloads(engine)] == [1, 1001, 601]


def test_an_account_without_notifications_gets_no_outbox_row(
    worker: Worker, engine: Engine, wire: RoundTripCounter
) -> None:
    before = outbox_payloads(engine)
    with wire.counting() as made:
        worker.deliver("ledger", payment("evt_q", "quiet", 700))
    assert made == [3]
    assert outbox_payloads(engine) == before
    with engine.connect() as conn:
        found = accounts.get(conn, "quiet")
        assert found is not None
        assert found.available == 701


def test_a_duplicate_costs_one_more_statement_and_changes_nothing(
    worker: Worker, engine: Engine, wire: RoundTripCounter
) -> None:
    worker.deliver("ledger", payment("evt_1", "acct", 2500))
    outbox_before = outbox_payloads(engine)
    statements = Statements(engine)
    with wire.counting() as made:
        worker.deliver("ledger", payment("evt_1", "acct", 2500))
    assert statements.log == [
        "WITH claim AS ( INSERT INTO inbox (sourc",
        "SELECT body_sha256 FROM inbox WHERE subs",
        "COMMIT",
    ]
    assert made == [6]  # the body comparison is not prepared: pg8000's three round trips
    with engine.connect() as conn:
        found = accounts.get(conn, "acct")
        assert found is not None
        assert found.available == 2501
    assert outbox_payloads(engine) == outbox_before


def test_a_conflicting_redelivery_is_a_dead_letter(worker: Worker, engine: Engine) -> None:
    worker.deliver("ledger", payment("evt_1", "acct", 2500))
    worker.deliver("ledger", payment("evt_1", "acct", 9999))
    assert dead_letter_reasons(engine) == ["same event id, different payload"]
    with engine.connect() as conn:
        found = accounts.get(conn, "acct")
        assert found is not None
        assert found.available == 2501


@pytest.mark.parametrize(
    ("account", "currency", "reason"),
    [
        ("acct_404", "usd", "unknown account 'acct_404'"),
        ("acct", "eur", "currency mismatch: account is usd, event is eur"),
    ],
    ids=["unknown-account", "other-currency"],
)
def test_an_account_that_cannot_take_it_rolls_the_claim_back(
    worker: Worker, engine: Engine, account: str, currency: str, reason: str
) -> None:
    statements = Statements(engine)
    worker.deliver("ledger", payment("evt_x", account, 500, currency))
    assert statements.first_transaction() == [
        "WITH claim AS ( INSERT INTO inbox (sourc",
        "SELECT id, currency, notify_url, availab",
        "ROLLBACK",
    ]
    assert not inbox_has(engine, "evt_x")
    assert dead_letter_reasons(engine) == [reason]
    with engine.connect() as conn:
        found = accounts.get(conn, "acct")
        assert found is not None
        assert found.available == 1
        assert conn.execute(sa.text("SELECT count(*) FROM ledger_transactions")).scalar_one() == 2


def test_an_event_type_the_ledger_ignores_is_its_claim_alone(
    worker: Worker, engine: Engine
) -> None:
    statements = Statements(engine)
    worker.deliver(
        "ledger", ledger_push("evt_c", stripe_event("evt_c", "customer.created", "acct"))
    )
    assert statements.log == ["INSERT INTO inbox (source, event_id, eve", "COMMIT"]
    with engine.connect() as conn:
        outcome = conn.execute(sa.text("SELECT outcome FROM inbox WHERE event_id = 'evt_c'"))
        assert outcome.scalar_one() == "ignored"


def test_an_event_log_delivery_is_three_round_trips(
    worker: Worker, engine: Engine, wire: RoundTripCounter
) -> None:
    worker.deliver("event-log", payment("evt_warm", "acct", 1))
    statements = Statements(engine)
    with wire.counting() as made:
        worker.deliver("event-log", payment("evt_l", "acct", 1))
    assert made == [3]
    assert statements.log == ["INSERT INTO event_log (source, event_id,", "COMMIT"]
