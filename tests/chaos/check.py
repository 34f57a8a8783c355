"""The chaos run's verdict, read straight from PostgreSQL with SQL of its own: nothing here
calls Hookyard's repositories, so a bug in them cannot vouch for itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tests.chaos.plan import Balances, Event, expected

LEDGER = "ledger"
SOURCE = "stripe"

_INBOX = sa.text(
    "SELECT event_id, outcome FROM inbox WHERE subscription = :sub AND source = :source"
)
_DEAD_LETTERS = sa.text(
    """
    SELECT event_id, coalesce(error_message, '') AS reason, state FROM dead_letters
    WHERE subscription = :sub AND source = :source AND state <> 'discarded'
    """
)
_DOUBLE_APPLIED = sa.text(
    """
    SELECT event_id FROM ledger_transactions WHERE subscription = :sub AND source = :source
    GROUP BY event_id HAVING count(*) > 1
    """
)
_UNBALANCED_TRANSACTIONS = sa.text(
    """
    SELECT t.id FROM ledger_transactions AS t JOIN postings AS p ON p.transaction_id = t.id
    GROUP BY t.id HAVING sum(p.amount) <> 0
    """
)
_BALANCES = sa.text(  # `\\:` is a colon, not a bind parameter, to SQLAlchemy
    r"""
    SELECT a.id, a.available, a.held,
           coalesce(sum(p.amount) FILTER (WHERE p.ledger_account LIKE '%\:available'), 0)
               AS posted_available,
           coalesce(sum(p.amount) FILTER (WHERE p.ledger_account LIKE '%\:held'), 0) AS posted_held
    FROM accounts AS a LEFT JOIN postings AS p
      ON p.ledger_account IN ('account\:' || a.id || '\:available', 'account\:' || a.id || '\:held')
    GROUP BY a.id, a.available, a.held
    """
)
_LOGGED = sa.text("SELECT event_id FROM event_log WHERE source = :source")


@dataclass
class Verdict:
    accepted: int = 0
    applied: int = 0
    ignored: int = 0
    dead_letters: int = 0
    lost: list[str] = field(default_factory=list)
    double_applied: list[str] = field(default_factory=list)
    invariant_violations: list[str] = field(default_factory=list)
    wrong_outcome: list[str] = field(default_factory=list)
    wrong_balance: list[str] = field(default_factory=list)
    not_logged: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.double_applied or self.invariant_violations
            or self.wrong_outcome or self.wrong_balance or self.not_logged
        )  # fmt: skip


def verdict(conn: Connection, accepted: Iterable[Event]) -> Verdict:
    events = {e.event_id: e for e in accepted}
    expectation = expected(events.values())
    keys = {"sub": LEDGER, "source": SOURCE}
    inbox = {r.event_id: r.outcome for r in conn.execute(_INBOX, keys)}
    dead = {r.event_id: r for r in conn.execute(_DEAD_LETTERS, keys)}
    logged = {r.event_id for r in conn.execute(_LOGGED, {"source": SOURCE})}
    result = Verdict(accepted=len(events))
    for event_id, event in events.items():
        outcome = inbox.get(event_id)
        letter = dead.get(event_id)
        if outcome == "applied":
            result.applied += 1
        elif outcome == "ignored":
            result.ignored += 1
        elif letter is not None and letter.reason.strip():
            result.dead_letters += 1
            outcome = "dead_letter"
        else:
            result.lost.append(event_id)
            continue
        want = expectation.outcome[event_id]
        either = want == "applied_or_ignored" and outcome in ("applied", "ignored")
        if outcome != want and not either:
            why = f" ({letter.reason[:80]})" if letter is not None else ""
            result.wrong_outcome.append(
                f"{event_id} {event.event_type}: {outcome}{why}, expected {want}"
            )
        if event_id not in logged:
            result.not_logged.append(event_id)
    result.double_applied = [r.event_id for r in conn.execute(_DOUBLE_APPLIED, keys)]
    result.invariant_violations += [
        f"transaction {r.id} does not sum to zero" for r in conn.execute(_UNBALANCED_TRANSACTIONS)
    ]
    for row in conn.execute(_BALANCES):
        if row.available != row.posted_available or row.held != row.posted_held:
            result.invariant_violations.append(f"{row.id}: balances differ from their postings")
        if row.held < 0:
            result.invariant_violations.append(f"{row.id}: held is negative ({row.held})")
        want = expectation.balances.get(row.id, Balances())
        if (row.available, row.held) != (want.available, want.held):
            result.wrong_balance.append(
                f"{row.id}: available {row.available} held {row.held}, "
                f"expected {want.available} and {want.held}"
            )
    return result
