"""Applies one event to the ledger inside the caller's transaction (with its inbox row).

A payment or payout costs two statements after the inbox claim: the balance update (which
also takes the account's row lock and checks its currency) and the ledger write.
"""

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
    PaymentSucceeded,
    PayoutPaid,
    parse_event,
)

log = get_logger(__name__)

Effect = PaymentSucceeded | ChargeRefunded | PayoutPaid


def apply_event(conn: Connection, key: EventKey, data: bytes) -> None:
    command = parse_event(data)
    if isinstance(command, Ignored):
        mark_ignored(conn, key)
        log.info("event type has no ledger effect", event_type=command.event_type)
        return
    kind, entries = _entries(conn, command)
    available_delta = sum(
        p.amount for p in entries if p.ledger_account == postings.available(command.account_id)
    )
    if not any(p.amount for p in entries):
        _explain_rejection(conn, command)
        mark_ignored(conn, key)
        log.info("event changes nothing", kind=kind)
        return
    if (
        accounts.apply_delta(
            conn, command.account_id, command.currency, available=available_delta, held=0
        )
        is None
    ):
        _explain_rejection(conn, command)
    ledger.record(
        conn,
        account_id=command.account_id,
        kind=kind,
        currency=command.currency,
        cause=key,
        postings=entries,
    )
    log.info("ledger updated", kind=kind, account_id=command.account_id, available=available_delta)


def _entries(conn: Connection, command: Effect) -> tuple[str, list[Posting]]:
    match command:
        case PaymentSucceeded(account_id=account_id, amount=amount):
            return "payment", postings.payment(account_id, amount)
        case PayoutPaid(account_id=account_id, amount=amount):
            return "payout", postings.payout(account_id, amount)
        case ChargeRefunded(account_id=account_id, charge_id=charge_id):
            # The charge row references the account, so check the account before creating it.
            _explain_rejection(conn, command, lock=True)
            applied, owner = ledger.lock_charge(conn, charge_id, account_id)
            if owner != account_id:
                raise PermanentError(f"charge {charge_id!r} belongs to another account")
            delta = postings.refund_delta(command.cumulative_refunded, applied)
            if delta:
                ledger.set_refunded(conn, charge_id, command.cumulative_refunded)
            return "refund", postings.refund(account_id, delta)
    raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover


def _explain_rejection(conn: Connection, command: Effect, *, lock: bool = False) -> None:
    """Raises the permanent reason the event cannot apply to its account, if there is one."""
    account = (accounts.lock if lock else accounts.get)(conn, command.account_id)
    if account is None:
        raise PermanentError(f"unknown account {command.account_id!r}")
    if account.currency != command.currency:
        raise PermanentError(
            f"currency mismatch: account is {account.currency}, event is {command.currency}"
        )
