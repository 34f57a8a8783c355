"""Which balances move for each command. Every list sums to zero by construction."""

from __future__ import annotations

from common.db.ledger import Posting

CLEARING = "platform:clearing"
PAYOUTS = "platform:payouts"
DISPUTES_LOST = "platform:disputes-lost"


def available(account_id: str) -> str:
    return f"account:{account_id}:available"


def held(account_id: str) -> str:
    return f"account:{account_id}:held"


def payment(account_id: str, amount: int) -> list[Posting]:
    return [Posting(available(account_id), amount), Posting(CLEARING, -amount)]


def refund(account_id: str, delta: int) -> list[Posting]:
    return [Posting(available(account_id), -delta), Posting(CLEARING, delta)]


def payout(account_id: str, amount: int) -> list[Posting]:
    return [Posting(available(account_id), -amount), Posting(PAYOUTS, amount)]


def hold(account_id: str, amount: int) -> list[Posting]:
    return [Posting(available(account_id), -amount), Posting(held(account_id), amount)]


def release(account_id: str, amount: int) -> list[Posting]:
    return [Posting(held(account_id), -amount), Posting(available(account_id), amount)]


def forfeit(account_id: str, amount: int) -> list[Posting]:
    return [Posting(held(account_id), -amount), Posting(DISPUTES_LOST, amount)]


def forfeit_unheld(account_id: str, amount: int) -> list[Posting]:
    """A dispute lost before its opening arrived: nothing was held, so it leaves available."""
    return [Posting(available(account_id), -amount), Posting(DISPUTES_LOST, amount)]


def refund_delta(cumulative: int, already_applied: int) -> int:
    """Refunds arrive cumulative and possibly out of order: only growth is applied."""
    return max(0, cumulative - already_applied)
