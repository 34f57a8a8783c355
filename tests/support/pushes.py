"""Push envelopes as the broker sends them, for tests that call `Worker.deliver` directly."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from common.envelope import PushEnvelope, build_envelope, parse_envelope


def ledger_push(event_id: str, body: bytes, message_id: str | None = None) -> PushEnvelope:
    raw = build_envelope(
        project="p",
        subscription="ledger",
        message_id=message_id or f"m-{event_id}",
        data=body,
        attributes={"source": "stripe", "event_id": event_id},
        publish_time=datetime.now(UTC),
    )
    return parse_envelope(json.dumps(raw).encode())


def handler_push(
    subscription: str,
    source: str,
    event_id: str,
    event_type: str | None,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
    message_id: str | None = None,
    attempt: int | None = None,
) -> PushEnvelope:
    """A delivery as the broker pushes what ingest published: kept headers as attributes."""
    attributes = {"source": source, "event_id": event_id, "content_type": content_type}
    if event_type is not None:
        attributes["event_type"] = event_type
    attributes |= {f"header.{k.lower()}": v for k, v in (headers or {}).items()}
    raw = build_envelope(
        project="p",
        subscription=subscription,
        message_id=message_id or f"m-{subscription}-{event_id}",
        data=body,
        attributes=attributes,
        publish_time=datetime.now(UTC),
        delivery_attempt=attempt,
    )
    return parse_envelope(json.dumps(raw).encode())
