"""A second handler for Stripe payments in tests: it writes nothing and counts its calls, so
a test sees which handlers a resend re-ran."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from workers.plugin import Effects, Event

CALLS: list[tuple[str, str]] = []


def handle(event: Event, tx: Connection) -> Effects:
    del tx
    CALLS.append((event.source, event.id))
    return Effects(rows=1)
