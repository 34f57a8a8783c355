"""Ledger rules applied through the worker's transaction on real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from common.db import accounts
from common.envelope import build_envelope, parse_envelope
from tests.support.stack import stripe_event
from workers.push import Worker


def deliver(worker: Worker, event_id: str, body: bytes, message_id: str | None = None) -> None:
    raw = build_envelope(
        project="p",
        subscription="ledger",
        message_id=message_id or f"m-{event_id}",
        data=body,
        attributes={"source": "stripe", "event_id": event_id},
        publish_time=datetime.now(UTC),
    )
    worker.deliver("ledger", parse_envelope(json.dumps(raw).encode()))


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
