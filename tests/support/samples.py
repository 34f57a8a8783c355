"""One realistic delivery per shipped source: body, media type, event type and expected id."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode


@dataclass(frozen=True)
class Sample:
    source: str
    body: bytes
    media_type: str
    event_id: str
    expected_id: str
    event_type: str | None = None


def samples(tag: str) -> list[Sample]:
    """`tag` keeps ids unique per test so the inbox never dedups across tests."""
    slack_id = f"Ev{tag}"
    return [
        Sample(
            "stripe",
            json.dumps({"id": f"evt_{tag}", "type": "customer.created", "data": {"object": {}}},
                       indent=2).encode(),
            "application/json", f"evt_{tag}", f"evt_{tag}",
        ),
        Sample(
            "standard",
            json.dumps({"type": "invoice.paid", "timestamp": "2026-11-23T00:00:00Z",
                        "data": {}}).encode(),
            "application/json", f"msg_{tag}", f"msg_{tag}",
        ),
        Sample(
            "github",
            json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode(),
            "application/json", f"gh-{tag}", f"gh-{tag}", event_type="ping",
        ),
        Sample(
            "shopify",
            json.dumps({"id": 820982911946154508, "email": "jon@example.com"}).encode(),
            "application/json", f"shop-{tag}", f"shop-{tag}", event_type="orders/create",
        ),
        Sample(
            "slack",
            json.dumps({"type": "event_callback", "event_id": slack_id,
                        "event": {"type": "app_mention", "text": "héllo"}}).encode(),
            "application/json", slack_id, slack_id,
        ),
        Sample(
            "twilio",
            urlencode({"MessageSid": f"SM{tag}", "MessageStatus": "delivered", "To": "+15558675310",
                       "ToCity": ""}).encode(),
            "application/x-www-form-urlencoded", f"SM{tag}", f"SM{tag}:delivered",
        ),
    ]  # fmt: skip
