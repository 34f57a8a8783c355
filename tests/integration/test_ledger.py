"""Ledger rules applied through the worker's transaction on real PostgreSQL."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from common.db import accounts
from tests.support.pushes import ledger_push
from tests.support.stack import stripe_event
from workers.push import Worker


def deliver(worker: Worker, event_id: str, body: bytes, message_id: str | None = None) -> None:
    worker.deliver("ledger", ledger_push(event_id, body, message_id))


@pytest.fixture
def worker(engine: Engine) -> Worker:
    with engine.begin() as conn:
        accounts.create(conn, "acct", "usd", None)
        accounts.create(conn, "other", "usd", None)
    return Worker(engine)


def balance(engine: Engine, account: str = "acct") -> int:
    with engine.connect() as conn:
        found = accounts.get(conn, account)
        assert found is not None
        return found.available


def test_payments_refunds_payouts(worker: Worker, engine: Engine) -> None:
    deliver(
        worker, "e1", stripe_event("e1", "payment_intent.succeeded", "acct", amount_received=1000)
    )
    deliver(
        worker, "e2", stripe_event("e2", "charge.refunded", "acct", id="ch_1", amount_refunded=300)
    )
    deliver(
        worker, "e3", stripe_event("e3", "charge.refunded", "acct", id="ch_1", amount_refunded=500)
    )
    # An older, smaller cumulative arriving late changes nothing.
    deliver(
        worker, "e4", stripe_event("e4", "charge.refunded", "acct", id="ch_1", amount_refunded=300)
    )
    deliver(worker, "e5", stripe_event("e5", "payout.paid", "acct", amount=200))
    assert balance(engine) == 1000 - 500 - 200
    with engine.connect() as conn:
        sums = conn.execute(
            sa.text("SELECT transaction_id, sum(amount) FROM postings GROUP BY 1")
        ).all()
        assert sums
        assert all(total == 0 for _, total in sums)
        posted = conn.execute(
            sa.text(
                "SELECT coalesce(sum(amount), 0) FROM postings"
                " WHERE ledger_account = 'account:acct:available'"
            )
        ).scalar_one()
        assert posted == balance(engine)
        outcomes = dict(conn.execute(sa.text("SELECT event_id, outcome FROM inbox")).all())
    assert outcomes["e4"] == "ignored"
    assert outcomes["e1"] == "applied"


def test_duplicate_event_id_applies_once(worker: Worker, engine: Engine) -> None:
    body = stripe_event("dup", "payment_intent.succeeded", "acct", amount_received=50)
    deliver(worker, "dup", body, message_id="m1")
    deliver(worker, "dup", body, message_id="m2")
    assert balance(engine) == 50


def test_unknown_types_recorded_without_effect(worker: Worker, engine: Engine) -> None:
    deliver(worker, "x1", stripe_event("x1", "customer.created", "acct"))
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT event_type, outcome FROM inbox")).one()
    assert tuple(row) == (None, "ignored")
    assert balance(engine) == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            stripe_event("bad1", "payment_intent.succeeded", "ghost", amount_received=5),
            "unknown account",
        ),
        (
            stripe_event("bad2", "payment_intent.succeeded", "acct", "eur", amount_received=5),
            "currency mismatch",
        ),
    ],
)
def test_permanent_errors_dead_letter_and_leave_no_trace(
    worker: Worker, engine: Engine, body: bytes, reason: str
) -> None:
    event_id = json.loads(body)["id"]
    deliver(worker, event_id, body)
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT origin, error_message, state, event_id FROM dead_letters")
        ).one()
        assert conn.execute(sa.text("SELECT count(*) FROM inbox")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM postings")).scalar_one() == 0
    assert row.origin == "worker"
    assert reason in row.error_message
    assert row.state == "pending"
    assert row.event_id == event_id


def test_refund_of_a_charge_owned_by_another_account_is_permanent(
    worker: Worker, engine: Engine
) -> None:
    deliver(
        worker, "r1", stripe_event("r1", "charge.refunded", "acct", id="ch_x", amount_refunded=10)
    )
    deliver(
        worker, "r2", stripe_event("r2", "charge.refunded", "other", id="ch_x", amount_refunded=20)
    )
    with engine.connect() as conn:
        reason = conn.execute(sa.text("SELECT error_message FROM dead_letters")).scalar_one()
    assert "another account" in reason
    assert balance(engine, "other") == 0


def held(engine: Engine, account: str = "acct") -> int:
    with engine.connect() as conn:
        found = accounts.get(conn, account)
        assert found is not None
        return found.held


def dispute(event_id: str, type_: str, dispute_id: str = "dp_1", **obj: object) -> bytes:
    return stripe_event(event_id, type_, "acct", id=dispute_id, charge="ch_1", **obj)


def test_dispute_holds_then_won_releases(worker: Worker, engine: Engine) -> None:
    deliver(
        worker, "p", stripe_event("p", "payment_intent.succeeded", "acct", amount_received=1000)
    )
    deliver(worker, "d1", dispute("d1", "charge.dispute.created", amount=400))
    assert (balance(engine), held(engine)) == (600, 400)
    deliver(worker, "d2", dispute("d2", "charge.dispute.closed", status="won", amount=400))
    deliver(worker, "d3", dispute("d3", "charge.dispute.closed", status="won", amount=400))
    assert (balance(engine), held(engine)) == (1000, 0)


def test_dispute_lost_removes_the_held_amount(worker: Worker, engine: Engine) -> None:
    deliver(
        worker, "p", stripe_event("p", "payment_intent.succeeded", "acct", amount_received=1000)
    )
    deliver(worker, "d1", dispute("d1", "charge.dispute.created", amount=250))
    deliver(worker, "d1-again", dispute("d1-again", "charge.dispute.created", amount=250))
    deliver(worker, "d2", dispute("d2", "charge.dispute.closed", status="lost", amount=250))
    deliver(worker, "d3", dispute("d3", "charge.dispute.closed", status="won", amount=250))
    assert (balance(engine), held(engine)) == (750, 0)
    with engine.connect() as conn:
        lost = conn.execute(
            sa.text(
                "SELECT sum(amount) FROM postings WHERE ledger_account = 'platform:disputes-lost'"
            )
        ).scalar_one()
    assert lost == 250


def outcomes(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT event_id, outcome FROM inbox"))
        return {row.event_id: row.outcome for row in rows}


def lost_to_disputes(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT coalesce(sum(amount), 0) FROM postings"
                    " WHERE ledger_account = 'platform:disputes-lost'"
                )
            ).scalar_one()
        )


def pay(worker: Worker, event_id: str, amount: int) -> None:
    body = stripe_event(event_id, "payment_intent.succeeded", "acct", amount_received=amount)
    deliver(worker, event_id, body)


def test_dispute_won_before_it_was_opened_never_holds(worker: Worker, engine: Engine) -> None:
    """However long before its opening the close comes, it is recorded, not retried."""
    pay(worker, "p1", 90)
    deliver(worker, "c1", dispute("c1", "charge.dispute.closed", status="won", amount=40))
    assert (balance(engine), held(engine)) == (90, 0)
    deliver(worker, "o1", dispute("o1", "charge.dispute.created", amount=40))
    deliver(worker, "o1", dispute("o1", "charge.dispute.created", amount=40), message_id="again")
    deliver(worker, "c2", dispute("c2", "charge.dispute.closed", status="lost", amount=40))
    assert (balance(engine), held(engine), lost_to_disputes(engine)) == (90, 0, 0)
    assert outcomes(engine) == {"p1": "applied", "c1": "applied", "o1": "applied", "c2": "ignored"}
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM disputes")).one()
        assert conn.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar_one() == 0
    assert (row.status, row.amount, row.opened_by, row.closed_by) == ("won", 40, "o1", "c1")


def test_dispute_lost_before_it_was_opened_takes_its_amount_when_it_opens(
    worker: Worker, engine: Engine
) -> None:
    pay(worker, "p1", 90)
    deliver(worker, "c1", dispute("c1", "charge.dispute.closed", status="lost", amount=40))
    deliver(worker, "c1", dispute("c1", "charge.dispute.closed", status="lost", amount=40))
    assert (balance(engine), held(engine), lost_to_disputes(engine)) == (90, 0, 0)
    deliver(worker, "o1", dispute("o1", "charge.dispute.created", amount=40))
    assert (balance(engine), held(engine), lost_to_disputes(engine)) == (50, 0, 40)
    with engine.connect() as conn:
        caused = conn.execute(
            sa.text("SELECT event_id, kind FROM ledger_transactions WHERE kind LIKE 'dispute%'")
        ).all()
    assert [tuple(row) for row in caused] == [("o1", "dispute.lost")]
    assert outcomes(engine)["c1"] == "applied"


def test_dispute_closed_early_on_one_account_cannot_open_on_another(
    worker: Worker, engine: Engine
) -> None:
    deliver(worker, "c1", dispute("c1", "charge.dispute.closed", status="lost", amount=40))
    body = stripe_event("o1", "charge.dispute.created", "other", id="dp_1", amount=40)
    deliver(worker, "o1", body)
    with engine.connect() as conn:
        reason = conn.execute(sa.text("SELECT error_message FROM dead_letters")).scalar_one()
    assert "belongs to another account" in reason
    assert (balance(engine, "other"), lost_to_disputes(engine)) == (0, 0)


def test_ledger_changes_write_outbox_rows_only_for_notifiable_accounts(
    worker: Worker, engine: Engine
) -> None:
    with engine.begin() as conn:
        accounts.update(conn, "acct", "usd", "http://127.0.0.1:9/hook")
    deliver(worker, "n1", stripe_event("n1", "payment_intent.succeeded", "acct", amount_received=5))
    deliver(
        worker, "n2", stripe_event("n2", "payment_intent.succeeded", "other", amount_received=5)
    )
    deliver(worker, "n3", stripe_event("n3", "customer.created", "acct"))
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT account_id, payload FROM outbox")).all()
    assert len(rows) == 1
    assert rows[0].account_id == "acct"
    assert rows[0].payload == {
        "type": "balance.updated", "account_id": "acct", "currency": "usd",
        "available": 5, "held": 0, "caused_by": "n1",
    }  # fmt: skip
