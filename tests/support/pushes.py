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
