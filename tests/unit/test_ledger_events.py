from __future__ import annotations

import json

import pytest

from common.db.ledger import Posting
from common.errors import PermanentError
from workers.ledger import postings
from workers.ledger.events import (
    ChargeRefunded,
    Ignored,
    PaymentSucceeded,
    PayoutPaid,
    parse_event,
)


def event(type_: str, **obj: object) -> bytes:
    return json.dumps(
        {"id": "evt_1", "type": type_, "created": 1, "data": {"object": obj}}
    ).encode()


META = {"account_id": "acct_1"}


def test_payment_uses_amount_received() -> None:
    cmd = parse_event(
        event(
            "payment_intent.succeeded",
            amount=999,
            amount_received=500,
            currency="USD",
            metadata=META,
        )
    )
    assert cmd == PaymentSucceeded("acct_1", "usd", 500)


def test_refund_carries_cumulative_amount_and_charge() -> None:
    cmd = parse_event(
        event("charge.refunded", id="ch_9", amount_refunded=300, currency="usd", metadata=META)
    )
    assert cmd == ChargeRefunded("acct_1", "usd", "ch_9", 300)


def test_payout() -> None:
    assert parse_event(
        event("payout.paid", amount=70, currency="eur", metadata=META)
    ) == PayoutPaid("acct_1", "eur", 70)


def test_other_types_are_ignored_without_validation() -> None:
    assert parse_event(event("customer.created")) == Ignored("customer.created")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'{"type": ""}', "no type"),
        (json.dumps({"type": "payout.paid"}).encode(), "data.object is missing"),
        (event("payout.paid", amount=1, currency="usd"), "account_id is missing"),
        (event("payout.paid", amount=-1, currency="usd", metadata=META), "non-negative"),
        (event("payout.paid", amount=1.5, currency="usd", metadata=META), "non-negative"),
        (event("payout.paid", amount=True, currency="usd", metadata=META), "non-negative"),
        (event("payout.paid", amount=1, currency="dollars", metadata=META), "ISO code"),
        (
            event("charge.refunded", amount_refunded=1, currency="usd", metadata=META),
            "id is missing",
        ),
        # What PostgreSQL or pg8000 cannot carry is refused before any SQL runs.
        (
            event("payout.paid", amount=1, currency="usd", metadata={"account_id": "a\ud800"}),
            "account_id is not valid Unicode",
        ),
        (
            event("payout.paid", amount=1, currency="usd", metadata={"account_id": "a\x00"}),
            "account_id contains a NUL",
        ),
        (
            event(
                "charge.refunded", id="ch_\udfff", amount_refunded=1, currency="usd", metadata=META
            ),
            "data.object.id is not valid Unicode",
        ),
        (
            event("charge.dispute.created", id="dp\x00", amount=1, currency="usd", metadata=META),
            "data.object.id contains a NUL",
        ),
        (event("payout.paid", amount=2**63, currency="usd", metadata=META), "64-bit"),
        (rb'{"type": "payout.\ud800"}', "type is not valid Unicode"),
        (b"[" * 5000 + b"]" * 5000, "nests deeper"),
    ],
)
def test_malformed_events_are_permanent(body: bytes, reason: str) -> None:
    with pytest.raises(PermanentError, match=reason):
        parse_event(body)


@pytest.mark.parametrize(
    ("cumulative", "applied", "delta"),
    [(300, 0, 300), (500, 300, 200), (200, 300, 0), (300, 300, 0)],
)
def test_refund_delta_never_negative(cumulative: int, applied: int, delta: int) -> None:
    assert postings.refund_delta(cumulative, applied) == delta


@pytest.mark.parametrize(
    "entries",
    [postings.payment("a", 120), postings.refund("a", 40), postings.payout("a", 80)],
)
def test_every_posting_set_sums_to_zero(entries: list[Posting]) -> None:
    assert sum(p.amount for p in entries) == 0
    assert any(p.ledger_account == "account:a:available" for p in entries)
