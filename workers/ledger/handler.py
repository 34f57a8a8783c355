"""Applies one event to the ledger inside the caller's transaction (with its inbox row).

A payment or payout, the common case, is one statement (`common.db.ledger_apply`): the inbox
claim, the balance update (which takes the account's row lock and checks its currency), the
ledger write and, for a notifiable account, the outbox row. A duplicate pays a second
statement to compare bodies; an account that cannot take the event, one to say why. An
event type the ledger ignores is its claim alone, marked ignored. Refunds and disputes read
before they write: they claim, lock, then apply.

A change to a notifiable account writes one outbox row in the same transaction; its id is
returned so the caller can relay it right after commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from common.db import accounts, disputes, inbox, ledger, ledger_apply, outbox
from common.db.accounts import Account
from common.db.inbox import EventKey, mark_ignored
from common.db.ledger import Posting
from common.errors import PermanentError, TransientError
from common.logging import get_logger
from workers.delivery import refuse_conflict
from workers.ledger import postings
from workers.ledger.events import (
    ChargeRefunded,
    DisputeClosed,
    DisputeCreated,
    Effect,
    Ignored,
    LedgerCommand,
    PaymentSucceeded,
    PayoutPaid,
    parse_event,
)
from workers.plugin import Effects, Event, claims_own_inbox

log = get_logger(__name__)

BALANCE_UPDATED = "balance.updated"
LEDGER_SOURCES = frozenset({"stripe"})
"""The ledger reads Stripe-shaped events. Its subscription filters on the source too, but
a filter is configuration: the handler does not rely on it."""


@claims_own_inbox
def handle(event: Event, conn: Connection) -> Effects:
    """The inbox row and the ledger effects in the caller's transaction; a duplicate (same
    id, same body) changes nothing."""
    key = EventKey(event.source, event.id)
    if key.source not in LEDGER_SOURCES:
        raise PermanentError(f"the ledger takes {', '.join(sorted(LEDGER_SOURCES))} events, "
                             f"not {key.source!r}")  # fmt: skip
    parsed = _parse(event.body)
    if isinstance(parsed, PaymentSucceeded | PayoutPaid) and parsed.amount:
        return _notifying(_apply_in_one_statement(conn, event, parsed))
    claim = inbox.claim(
        conn,
        key,
        event_type=event.type,
        subscription=event.handler,
        message_id=event.message_id,
        body_sha256=event.body_sha256,
        outcome="ignored" if isinstance(parsed, Ignored) else "applied",
    )
    if not refuse_conflict(claim):
        log.info("duplicate delivery acknowledged without effect")
        return Effects()
    if isinstance(parsed, PermanentError):
        raise parsed
    if isinstance(parsed, Ignored):
        log.info("event type has no ledger effect", event_type=parsed.event_type)
        return Effects()
    return _notifying(apply_event(conn, key, parsed, subscription=event.handler))


def _notifying(outbox_ids: list[int]) -> Effects:
    return Effects(notifications=outbox_ids)


def _parse(data: bytes) -> LedgerCommand | PermanentError:
    """The command, or why there is none: reported after the claim, so a duplicate or a
    conflicting redelivery is still recognised as such first."""
    try:
        return parse_event(data)
    except PermanentError as exc:
        return exc


def _apply_in_one_statement(
    conn: Connection, event: Event, command: PaymentSucceeded | PayoutPaid
) -> list[int]:
    key = EventKey(event.source, event.id)
    move = _entries(conn, command, key)
    kind, entries = move.kind, move.postings
    account_id = command.account_id
    available, held = _deltas(account_id, entries)
    outcome = ledger_apply.apply(
        conn,
        ledger_apply.Arrival(
            key=key,
            event_type=event.type,
            subscription=event.handler,
            message_id=event.message_id,
            body_sha256=event.body_sha256,
        ),
        ledger_apply.Movement(
            account_id=account_id,
            currency=command.currency,
            kind=kind,
            postings=entries,
            available=available,
            held=held,
        ),
        notify_kind=BALANCE_UPDATED,
    )
    if not outcome.claimed:
        refuse_conflict(
            inbox.compare_body(conn, key, event.body_sha256, subscription=event.handler)
        )
        log.info("duplicate delivery acknowledged without effect")
        return []
    if not outcome.applied:
        # Raising rolls the claim back with the rest: the inbox keeps no row for it.
        _explain_rejection(conn, command)
        raise PermanentError(f"account {account_id!r} cannot take this event")  # pragma: no cover
    log.info("ledger updated", kind=kind, account_id=account_id, available=available, held=held)
    return [] if outcome.outbox_id is None else [outcome.outbox_id]


def apply_event(
    conn: Connection, key: EventKey, command: Effect, *, subscription: str
) -> list[int]:
    move = _entries(conn, command, key)
    kind, entries = move.kind, [p for p in move.postings if p.amount]
    if not entries:
        _explain_rejection(conn, command)
        if move.recorded:
            log.info("event recorded; no balance moves", kind=kind)
        else:
            mark_ignored(conn, key, subscription=subscription)
            log.info("event changes nothing", kind=kind)
        return []
    account_id = command.account_id
    available, held = _deltas(account_id, entries)
    account = accounts.apply_delta(
        conn, account_id, command.currency, available=available, held=held
    )
    if account is None:
        _explain_rejection(conn, command)
        raise PermanentError(f"account {account_id!r} cannot take this event")  # pragma: no cover
    ledger.record(
        conn,
        account_id=account_id,
        kind=kind,
        currency=command.currency,
        cause=key,
        subscription=subscription,
        postings=entries,
    )
    log.info("ledger updated", kind=kind, account_id=account_id, available=available, held=held)
    return [_announce(conn, account, key)] if account.notifications_enabled else []


def _deltas(account_id: str, entries: list[Posting]) -> tuple[int, int]:
    """How much the account's available and held balances move."""
    available = sum(p.amount for p in entries if p.ledger_account == postings.available(account_id))
    held = sum(p.amount for p in entries if p.ledger_account == postings.held(account_id))
    return available, held


def _announce(conn: Connection, account: Account, cause: EventKey) -> int:
    return outbox.add(
        conn,
        account.id,
        BALANCE_UPDATED,
        {
            "type": BALANCE_UPDATED,
            "account_id": account.id,
            "currency": account.currency,
            "available": account.available,
            "held": account.held,
            "caused_by": cause.event_id,
        },
    )


@dataclass(frozen=True, slots=True)
class Move:
    kind: str
    postings: list[Posting]
    recorded: bool = False
    """The event changed state outside the ledger (a dispute closed before it was opened),
    so it is applied even with nothing to post."""


def _entries(conn: Connection, command: Effect, key: EventKey) -> Move:
    match command:
        case PaymentSucceeded(account_id=account_id, amount=amount):
            return Move("payment", postings.payment(account_id, amount))
        case PayoutPaid(account_id=account_id, amount=amount):
            return Move("payout", postings.payout(account_id, amount))
        case ChargeRefunded(account_id=account_id, charge_id=charge_id):
            # The charge row references the account, so check the account before creating it.
            _explain_rejection(conn, command, lock=True)
            applied, owner = ledger.lock_charge(conn, charge_id, account_id)
            if owner != account_id:
                raise PermanentError(f"charge {charge_id!r} belongs to another account")
            delta = postings.refund_delta(command.cumulative_refunded, applied)
            if delta:
                ledger.set_refunded(conn, charge_id, command.cumulative_refunded)
            return Move("refund", postings.refund(account_id, delta))
        case DisputeCreated():
            _explain_rejection(conn, command, lock=True)
            return _open_dispute(conn, command, key)
        case DisputeClosed():
            _explain_rejection(conn, command, lock=True)
            return _close_dispute(conn, command, key)
    raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover


def _open_dispute(conn: Connection, command: DisputeCreated, key: EventKey) -> Move:
    """Holds the amount. A dispute already closed was never held: won, nothing moves; lost,
    the amount leaves the available balance directly."""
    account_id, amount = command.account_id, command.amount
    if disputes.open_dispute(conn, command.dispute_id, account_id, amount, key.event_id):
        return Move("dispute.hold", postings.hold(account_id, amount))
    dispute = _locked(conn, command.dispute_id, account_id)
    if dispute.opened:
        return Move("dispute.hold", [])
    disputes.open_closed(conn, dispute.id, amount, key.event_id)
    if dispute.status == "won":
        return Move("dispute.won", [], recorded=True)
    return Move("dispute.lost", postings.forfeit_unheld(account_id, amount), recorded=True)


def _close_dispute(conn: Connection, command: DisputeClosed, key: EventKey) -> Move:
    kind, status = _closed_kind(command.won), _status(command.won)
    account_id, dispute_id = command.account_id, command.dispute_id
    if disputes.close_unopened(conn, dispute_id, account_id, status, key.event_id):
        return Move(kind, [], recorded=True)
    dispute = _locked(conn, dispute_id, account_id)
    if dispute.status != "open" or dispute.amount is None:
        return Move(kind, [])
    disputes.close(conn, dispute.id, status, key.event_id)
    move = postings.release if command.won else postings.forfeit
    return Move(kind, move(account_id, dispute.amount))


def _locked(conn: Connection, dispute_id: str, account_id: str) -> disputes.Dispute:
    """The dispute's row, which the caller's insert just found to exist."""
    dispute = disputes.lock(conn, dispute_id)
    if dispute is None:  # pragma: no cover - rows are never deleted
        raise TransientError(f"dispute {dispute_id!r} vanished while it was being applied")
    if dispute.account_id != account_id:
        raise PermanentError(f"dispute {dispute_id!r} belongs to another account")
    return dispute


def _closed_kind(won: bool) -> str:
    return "dispute.won" if won else "dispute.lost"


def _status(won: bool) -> disputes.Outcome:
    return "won" if won else "lost"


def _explain_rejection(conn: Connection, command: Effect, *, lock: bool = False) -> None:
    """Raises the permanent reason the event cannot apply to its account, if there is one."""
    account = (accounts.lock if lock else accounts.get)(conn, command.account_id)
    if account is None:
        raise PermanentError(f"unknown account {command.account_id!r}")
    if account.currency != command.currency:
        raise PermanentError(
            f"currency mismatch: account is {account.currency}, event is {command.currency}"
        )
