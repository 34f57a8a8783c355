"""Applies one event to the ledger inside the caller's transaction (with its inbox row)."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from common.db import accounts, ledger
from common.db.inbox import EventKey, mark_ignored
from common.db.ledger import Posting
from common.errors import PermanentError
from common.logging import get_logger
from workers.ledger import postings
from workers.ledger.events import (
    ChargeRefunded,
    Ignored,
    LedgerCommand,
    PaymentSucceeded,
    PayoutPaid,
    parse_event,
)

log = get_logger(__name__)


def apply_event(conn: Connection, key: EventKey, data: bytes) -> None:
    command = parse_event(data)
    if isinstance(command, Ignored):
        mark_ignored(conn, key)
        log.info("event type has no ledger effect", event_type=command.event_type)
        return
    account = accounts.lock(conn, command.account_id)
    if account is None:
        raise PermanentError(f"unknown account {command.account_id!r}")
    if account.currency != command.currency:
        raise PermanentError(
            f"currency mismatch: account is {account.currency}, event is {command.currency}"
        )
    kind, entries = _entries(conn, command)
    entries = [p for p in entries if p.amount]
    if not entries:
        mark_ignored(conn, key)
        log.info("event changes nothing", kind=kind)
        return
    ledger.record(
        conn,
        account_id=account.id,
        kind=kind,
        currency=account.currency,
        cause=key,
        postings=entries,
    )
    delta = sum(p.amount for p in entries if p.ledger_account == postings.available(account.id))
    accounts.add_to_balances(conn, account.id, available=delta, held=0)
    log.info("ledger updated", kind=kind, account_id=account.id, available_delta=delta)


def _entries(conn: Connection, command: LedgerCommand) -> tuple[str, list[Posting]]:
    match command:
        case PaymentSucceeded(account_id=account_id, amount=amount):
            return "payment", postings.payment(account_id, amount)
        case PayoutPaid(account_id=account_id, amount=amount):
            return "payout", postings.payout(account_id, amount)
        case ChargeRefunded(account_id=account_id, charge_id=charge_id):
            applied, owner = ledger.lock_charge(conn, charge_id, account_id)
            if owner != account_id:
                raise PermanentError(f"charge {charge_id!r} belongs to another account")
            delta = postings.refund_delta(command.cumulative_refunded, applied)
            if delta:
                ledger.set_refunded(conn, charge_id, command.cumulative_refunded)
            return "refund", postings.refund(account_id, delta)
    raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover
