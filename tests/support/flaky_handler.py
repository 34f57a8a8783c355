"""A handler the e2e story breaks and mends: it runs in the test's own process (the stack's
targets do too), so the test flips `broken` as an operator's deploy would."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from common.errors import PermanentError
from workers.plugin import Effects, Event

broken = True
calls: list[str] = []


def handle(event: Event, tx: Connection) -> Effects:
    del tx
    calls.append(event.id)
    if broken:
        raise PermanentError("payment-audit: the audit rules are broken")
    return Effects(rows=0)
