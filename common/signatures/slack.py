"""Slack: `X-Slack-Signature: v0=<hex>` over `v0:{timestamp}:{raw_body}`.

The signing secret is used as its UTF-8 text, not hex-decoded, even though it looks like hex.
"""

from __future__ import annotations

from common.signatures.base import DEFAULT_TOLERANCE_S, SingleDigestVerifier


class SlackVerifier(SingleDigestVerifier):
    def __init__(self, tolerance_s: int = DEFAULT_TOLERANCE_S) -> None:
        super().__init__(
            header="X-Slack-Signature",
            prefix="v0=",
            timestamp_header="X-Slack-Request-Timestamp",
            tolerance_s=tolerance_s,
        )

    def signed_message(self, timestamp: str | None, body: bytes) -> bytes:
        return f"v0:{timestamp}:".encode() + body
