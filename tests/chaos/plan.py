"""What the chaos run sends, and what the ledger must show for it: pure, seeded, no I/O.

The expectation is computed here from the events alone, by rules restated from Stripe's
event shapes (a payment adds `amount_received`; refunds report a charge's cumulative
`amount_refunded`, so only the largest one counts whatever the order; a payout subtracts; a
dispute moves its amount from available to held until it is won, returned, or lost, gone,
and the order they arrive in does not matter), never by Hookyard's code, so a bug there
cannot agree with itself.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from tests.support.stack import stripe_event

ACCOUNTS = tuple(f"acct_chaos_{n:03d}" for n in range(100))
CURRENCY = "usd"
DUPLICATE_SHARE = 0.2
TRIPLICATE_SHARE = 0.04
UNKNOWN_ACCOUNT_SHARE = 0.005
POISON_SHARE = 0.005

Expect = Literal["applied", "ignored", "dead_letter", "applied_or_ignored"]
"""`applied_or_ignored`: a refund whose cumulative amount a larger one, delivered first, already
covered has nothing left to apply; which one comes first is the broker's choice."""


@dataclass(frozen=True, slots=True)
class Effect:
    """One event's effect on one account, as the expectation model reads it."""

    kind: Literal["payment", "refund", "payout", "dispute_open", "dispute_close", "none"]
    account: str
    amount: int = 0
    charge: str = ""
    dispute: str = ""
    won: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    event_type: str
    body: bytes
    effect: Effect
    expect: Expect
    """What the ledger must do with it if it is accepted, whatever else was accepted."""
    poison: str = ""


@dataclass
class Plan:
    events: list[Event]
    sends: list[int]
    """Indexes into `events`, shuffled, with the duplicates and triplicates mixed in."""


def _poison(event_id: str, account: str, kind: int) -> tuple[str, bytes, str]:
    """Inputs the hostile-input issue names, signed as Stripe signs: each is accepted by
    ingest (it verifies, it has an id) and must end as a dead letter with a reason."""
    charge = f"ch_{event_id}"
    match kind % 5:
        case 0:
            obj = {"id": f"pi_{event_id}", "amount_received": -5, "latest_charge": charge}
            return (
                "payment_intent.succeeded",
                stripe_event(event_id, "payment_intent.succeeded", account, **obj),
                "negative amount",
            )
        case 1:
            obj = {"id": f"pi_{event_id}", "amount_received": 2**70, "latest_charge": charge}
            return (
                "payment_intent.succeeded",
                stripe_event(event_id, "payment_intent.succeeded", account, **obj),
                "amount out of range",
            )
        case 2:
            body = json.loads(
                stripe_event(event_id, "payout.paid", account, id=f"po_{event_id}", amount=10)
            )
            body["data"]["object"]["currency"] = "eur"
            return "payout.paid", json.dumps(body).encode(), "currency mismatch"
        case 3:
            body = json.loads(
                stripe_event(event_id, "payment_intent.succeeded", account, amount_received=10)
            )
            del body["data"]["object"]["metadata"]
            return "payment_intent.succeeded", json.dumps(body).encode(), "no account"
        case _:
            obj = {"id": f"po_{event_id}", "amount": 10, "description": "nul\u0000byte"}
            return (
                "payout.paid",
                stripe_event(event_id, "payout.paid", account, **obj),
                "NUL in a string",
            )
    raise AssertionError("unreachable")  # pragma: no cover


def make_plan(events: int, seed: int) -> Plan:
    rng = random.Random(seed)
    out: list[Event] = []
    charges: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    """account -> [(charge id, amount, refunded so far)]"""

    def new_id() -> str:
        return f"evt_chaos_{seed}_{len(out):06d}"

    while len(out) < events:
        account = rng.choice(ACCOUNTS)
        roll = rng.random()
        event_id = new_id()
        if roll < UNKNOWN_ACCOUNT_SHARE:
            stranger = f"acct_missing_{rng.randrange(1000)}"
            body = stripe_event(event_id, "payment_intent.succeeded", stranger, amount_received=100)
            out.append(
                Event(
                    event_id,
                    "payment_intent.succeeded",
                    body,
                    Effect("none", stranger),
                    "dead_letter",
                    "unknown account",
                )
            )
        elif roll < UNKNOWN_ACCOUNT_SHARE + POISON_SHARE:
            event_type, body, why = _poison(event_id, account, rng.randrange(5))
            out.append(
                Event(event_id, event_type, body, Effect("none", account), "dead_letter", why)
            )
        elif roll < 0.45 or not charges[account]:
            charge = f"ch_{event_id}"
            amount = rng.randint(100, 50_000)
            charges[account].append((charge, amount, 0))
            obj = {
                "id": f"pi_{event_id}",
                "amount": amount,
                "amount_received": amount,
                "latest_charge": charge,
            }
            body = stripe_event(event_id, "payment_intent.succeeded", account, **obj)
            out.append(
                Event(
                    event_id,
                    "payment_intent.succeeded",
                    body,
                    Effect("payment", account, amount, charge),
                    "applied",
                )
            )
        elif roll < 0.62:
            index = rng.randrange(len(charges[account]))
            charge, amount, refunded = charges[account][index]
            if refunded >= amount:
                continue
            cumulative = rng.randint(refunded + 1, amount)
            charges[account][index] = (charge, amount, cumulative)
            body = stripe_event(
                event_id, "charge.refunded", account, id=charge, amount_refunded=cumulative
            )
            out.append(
                Event(
                    event_id,
                    "charge.refunded",
                    body,
                    Effect("refund", account, cumulative, charge),
                    "applied_or_ignored",
                )
            )
        elif roll < 0.72:
            amount = rng.randint(1, 5_000)
            body = stripe_event(
                event_id, "payout.paid", account, id=f"po_{event_id}", amount=amount
            )
            out.append(
                Event(event_id, "payout.paid", body, Effect("payout", account, amount), "applied")
            )
        elif roll < 0.85:
            charge, amount, _ = rng.choice(charges[account])
            dispute = f"dp_{event_id}"
            obj = {"id": dispute, "charge": charge, "amount": amount, "status": "needs_response"}
            body = stripe_event(event_id, "charge.dispute.created", account, **obj)
            out.append(
                Event(
                    event_id,
                    "charge.dispute.created",
                    body,
                    Effect("dispute_open", account, amount, charge, dispute),
                    "applied",
                )
            )
            outcome = rng.random()
            if outcome < 0.8 and len(out) < events:
                won = outcome < 0.4
                closed_id = new_id()
                obj = {
                    "id": dispute,
                    "charge": charge,
                    "amount": amount,
                    "status": "won" if won else "lost",
                }
                body = stripe_event(closed_id, "charge.dispute.closed", account, **obj)
                out.append(
                    Event(
                        closed_id,
                        "charge.dispute.closed",
                        body,
                        Effect("dispute_close", account, amount, charge, dispute, won),
                        "applied",
                    )
                )
        else:
            event_type = rng.choice(
                ["customer.created", "invoice.paid", "charge.dispute.funds_withdrawn"]
            )
            body = stripe_event(event_id, event_type, account, id=f"obj_{event_id}")
            out.append(Event(event_id, event_type, body, Effect("none", account), "ignored"))
    sends = list(range(len(out)))
    for index in range(len(out)):
        if rng.random() < DUPLICATE_SHARE:
            sends.append(index)
            if rng.random() < TRIPLICATE_SHARE / DUPLICATE_SHARE:
                sends.append(index)
    rng.shuffle(sends)
    return Plan(out, sends)


@dataclass
class Balances:
    available: int = 0
    held: int = 0


@dataclass
class Expectation:
    balances: dict[str, Balances] = field(default_factory=lambda: defaultdict(Balances))
    outcome: dict[str, Expect] = field(default_factory=dict)


def expected(accepted: Iterable[Event]) -> Expectation:
    """Balances and per-event outcomes implied by the events that got a 2xx, each once."""
    events = {e.event_id: e for e in accepted}
    result = Expectation()
    refunded: dict[str, int] = {}
    opened = {e.effect.dispute: e for e in events.values() if e.effect.kind == "dispute_open"}
    for event in events.values():
        effect, balance = event.effect, result.balances[event.effect.account]
        result.outcome[event.event_id] = event.expect
        match effect.kind:
            case "payment":
                balance.available += effect.amount
            case "refund":
                refunded[effect.charge] = max(refunded.get(effect.charge, 0), effect.amount)
            case "payout":
                balance.available -= effect.amount
            case "dispute_open":
                balance.available -= effect.amount
                balance.held += effect.amount
            case "dispute_close":
                if effect.dispute not in opened:
                    # The opening was never accepted: the close is recorded, nothing moves.
                    continue
                balance.held -= effect.amount
                if effect.won:
                    balance.available += effect.amount
    charge_account = {
        e.effect.charge: e.effect.account for e in events.values() if e.effect.kind == "refund"
    }
    for charge, total in refunded.items():
        result.balances[charge_account[charge]].available -= total
    return result
