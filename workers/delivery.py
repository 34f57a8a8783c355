"""What a push handler receives: one event, its key checked storable, its body hashed once."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from common.db.inbox import Claim, EventKey
from common.envelope import PushMessage
from common.errors import PermanentError
from common.storable import attributes_problem

SAME_ID_DIFFERENT_PAYLOAD = "same event id, different payload"


@dataclass(frozen=True, slots=True)
class Delivered:
    key: EventKey
    event_type: str | None
    subscription: str
    message: PushMessage
    body_sha256: bytes

    @classmethod
    def of(cls, subscription: str, message: PushMessage) -> Delivered:
        """Refuses, permanently, a message whose key or attributes PostgreSQL cannot hold."""
        attributes = message.attributes
        if (found := attributes_problem(attributes)) is not None:
            name, reason = found
            raise PermanentError(f"{reason}: {name!r}")
        source, event_id = attributes.get("source"), attributes.get("event_id")
        if not source or not event_id:
            raise PermanentError("message has no source or event_id attribute")
        return cls(
            key=EventKey(source, event_id),
            event_type=attributes.get("event_type"),
            subscription=subscription,
            message=message,
            body_sha256=hashlib.sha256(message.data).digest(),
        )


@dataclass(frozen=True, slots=True)
class Handled:
    """What must happen after commit: notifications to relay, messages to publish; and the
    outcome, for the metrics."""

    notifications: Sequence[int] = ()
    messages: Sequence[int] = ()
    outcome: HandledOutcome = "applied"


HandledOutcome = Literal["applied", "ignored", "duplicate", "skipped"]
NOTHING = Handled()
DUPLICATE = Handled(outcome="duplicate")
SKIPPED = Handled(outcome="skipped")
"""Not this handler's event."""


def refuse_conflict(claim: Claim) -> bool:
    """True for a first delivery, False for a duplicate; a different body under a known id
    is a dead letter for an operator, never applied and never dropped in silence."""
    if claim is Claim.CONFLICT:
        raise PermanentError(SAME_ID_DIFFERENT_PAYLOAD)
    return claim is Claim.FIRST
