"""A reference model of one account's ledger: a Stripe event history applied once, in order.

A dispute's close may come before its opening (senders do not promise order): nothing was
held, so a dispute won moves nothing and one lost takes its amount from available.

Deliberately independent of `workers.ledger`: it restates the rules from the event shapes
(payments add `amount_received`, refunds carry a charge's cumulative `amount_refunded`,
payouts subtract, a dispute moves its amount from available to held until it is won or lost)
so that the property tests compare the worker against a second, much simpler implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tests.support.stack import stripe_event


@dataclass(frozen=True, slots=True)
class Payment:
    event_id: str
    charge_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class Refund:
    event_id: str
    charge_id: str
    cumulative: int
    """The charge's total refunded so far, as `charge.refunded` reports it."""


@dataclass(frozen=True, slots=True)
class Payout:
    event_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class DisputeOpened:
    event_id: str
    dispute_id: str
    charge_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class DisputeClosed:
    event_id: str
    dispute_id: str
    charge_id: str
    amount: int
    won: bool


@dataclass(frozen=True, slots=True)
class Unrelated:
    """An event type the ledger ignores; it still takes its inbox row."""

    event_id: str


HistoryEvent = Payment | Refund | Payout | DisputeOpened | DisputeClosed | Unrelated


@dataclass(frozen=True, slots=True)
class Balances:
    available: int
    held: int


def apply_in_order(history: Sequence[HistoryEvent]) -> Balances:
    """The balances after applying every event exactly once, in the order given."""
    available = held = 0
    refunded: dict[str, int] = {}
    dispute_amounts: dict[str, int] = {}
    open_disputes: set[str] = set()
    closed_first: dict[str, bool] = {}
    """Disputes closed before they were opened: won or not."""
    for event in history:
        match event:
            case Payment(amount=amount):
                available += amount
            case Refund(charge_id=charge_id, cumulative=cumulative):
                growth = max(0, cumulative - refunded.get(charge_id, 0))
                refunded[charge_id] = refunded.get(charge_id, 0) + growth
                available -= growth
            case Payout(amount=amount):
                available -= amount
            case DisputeOpened(dispute_id=dispute_id, amount=amount):
                if dispute_id in dispute_amounts:
                    continue
                dispute_amounts[dispute_id] = amount
                if dispute_id in closed_first:
                    if not closed_first[dispute_id]:
                        available -= amount
                    continue
                open_disputes.add(dispute_id)
                available -= amount
                held += amount
            case DisputeClosed(dispute_id=dispute_id, won=won):
                if dispute_id not in dispute_amounts:
                    closed_first.setdefault(dispute_id, won)
                elif dispute_id in open_disputes:
                    open_disputes.remove(dispute_id)
                    held -= dispute_amounts[dispute_id]
                    if won:
                        available += dispute_amounts[dispute_id]
            case Unrelated():
                pass
    return Balances(available, held)


@dataclass(frozen=True, slots=True)
class StripeEvent:
    event_id: str
    event_type: str
    body: bytes


def to_stripe(event: HistoryEvent, account_id: str, namespace: str) -> StripeEvent:
    """The event as Stripe would send it, every id prefixed with `namespace`.

    The namespace keeps inbox keys, charges and disputes of one scenario apart from those of
    every other scenario run against the same database.
    """

    def scoped(local_id: str) -> str:
        return f"{namespace}_{local_id}"

    event_type, obj = _stripe_object(event, scoped)
    event_id = scoped(event.event_id)
    return StripeEvent(event_id, event_type, stripe_event(event_id, event_type, account_id, **obj))


def _stripe_object(event: HistoryEvent, scoped: Callable[[str], str]) -> tuple[str, dict[str, Any]]:
    match event:
        case Payment(charge_id=charge_id, amount=amount):
            return "payment_intent.succeeded", {
                "id": scoped(f"pi_{charge_id}"),
                "amount": amount,
                "amount_received": amount,
                "latest_charge": scoped(charge_id),
            }
        case Refund(charge_id=charge_id, cumulative=cumulative):
            return "charge.refunded", {"id": scoped(charge_id), "amount_refunded": cumulative}
        case Payout(event_id=event_id, amount=amount):
            return "payout.paid", {"id": scoped(f"po_{event_id}"), "amount": amount}
        case DisputeOpened(dispute_id=dispute_id, charge_id=charge_id, amount=amount):
            return "charge.dispute.created", {
                "id": scoped(dispute_id),
                "charge": scoped(charge_id),
                "amount": amount,
                "status": "needs_response",
            }
        case DisputeClosed(dispute_id=dispute_id, charge_id=charge_id, amount=amount, won=won):
            return "charge.dispute.closed", {
                "id": scoped(dispute_id),
                "charge": scoped(charge_id),
                "amount": amount,
                "status": "won" if won else "lost",
            }
        case Unrelated(event_id=event_id):
            return "customer.created", {"id": scoped(f"cus_{event_id}")}
    raise AssertionError(f"unhandled history event {event!r}")  # pragma: no cover
