"""What a handler author imports: the event a handler receives and the effects it returns.

A handler is `def handle(event: Event, tx: Connection) -> Effects | None`, declared in
`topology.yaml` under `handlers:`. It runs inside the transaction that also claims the
event in the inbox (keyed by the handler's name), so its writes happen once or not at all.
Raise `PermanentError` for an event it can never apply (a dead letter for an operator);
any other exception rolls back and the broker redelivers with backoff.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from common.errors import PermanentError

__all__ = ["Effects", "Event", "HandlerFunction", "Message", "PermanentError", "claims_own_inbox"]


@dataclass(frozen=True, slots=True)
class Event:
    source: str
    id: str
    type: str | None
    body: bytes
    """The exact bytes the sender signed."""
    content_type: str | None
    headers: Mapping[str, str]
    """The sender headers the source keeps (lower-case names); never a signature."""
    received_at: datetime | None
    handler: str
    """The handler this delivery is for: the inbox key's first part."""
    message_id: str
    body_sha256: bytes

    def json(self) -> Any:
        """The payload as JSON: the body, or a form body's fields (a JSON `payload` field,
        as GitHub and Slack send, parsed). A `PermanentError` when it is neither."""
        from common.errors import BadRequest
        from common.webhook_body import payload_document

        try:
            return payload_document(self.body, self.content_type)
        except BadRequest as exc:
            raise PermanentError(f"payload: {exc.detail}") from exc


@dataclass(frozen=True, slots=True)
class Message:
    """A Pub/Sub message to publish once the handler's transaction commits (an outbox row
    until then). `topic` must be declared in topology.yaml."""

    topic: str
    data: bytes | Mapping[str, Any]
    attributes: Mapping[str, str] = field(default_factory=dict)
    ordering_key: str = ""

    def payload(self) -> bytes:
        if isinstance(self.data, bytes):
            return self.data
        return json.dumps(self.data, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True, slots=True)
class Effects:
    """What the handler did, shown per handler in `hookyard events show`."""

    rows: int = 0
    """Rows the handler wrote."""
    messages: Sequence[Message] = ()
    ignored: str | None = None
    """Why the handler had nothing to do with this event (its outcome is then `ignored`)."""
    notifications: Sequence[int] = ()
    """Ids of `outbox` rows written for the Cloud Tasks notification relay."""

    @classmethod
    def ignore(cls, reason: str) -> Effects:
        return cls(ignored=reason)


HandlerFunction = Callable[[Event, Connection], "Effects | None"]

_OWN_INBOX = "__hookyard_claims_own_inbox__"


def claims_own_inbox(function: HandlerFunction) -> HandlerFunction:
    """For a handler that writes its inbox claim itself, in the same statement as its effects
    (the ledger does, to save round trips): the runner then neither claims nor records."""
    setattr(function, _OWN_INBOX, True)
    return function


def has_own_inbox(function: HandlerFunction) -> bool:
    return bool(getattr(function, _OWN_INBOX, False))
