"""Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>][,v0=<hex>]` over `{t}.{raw_body}`.

The key is the whole `whsec_...` string as UTF-8 (not base64-decoded, unlike Standard Webhooks).
Only `v1` counts: test mode adds a `v0` that must never be accepted, even when it happens to be
a correct digest. Several `v1` appear while a rolled secret is still active.
"""

from __future__ import annotations

from typing import Final

from common.errors import SignatureInvalid
from common.signatures.base import (
    DEFAULT_TOLERANCE_S,
    MacVerifier,
    Signed,
    SignedRequest,
    check_timestamp,
    check_tolerance,
    decode_hex,
    malformed,
    required,
)

SIGNATURE_HEADER: Final = "Stripe-Signature"
_HEADER_KEY: Final = SIGNATURE_HEADER.lower()
_DIGEST_SIZE: Final = 32


def signed_payload(timestamp: str, body: bytes) -> bytes:
    return f"{timestamp}.".encode() + body


def parse_header(value: str) -> tuple[str, list[bytes]]:
    """Items without `=` or a second `t` make the header ambiguous, so it is rejected whole."""
    timestamp: str | None = None
    saw_v1 = False
    digests: list[bytes] = []
    for item in value.split(","):
        key, sep, text = item.partition("=")
        if not sep:
            raise malformed()
        if key == "t":
            if timestamp is not None:
                raise malformed()
            timestamp = text
        elif key == "v1":
            saw_v1 = True
            digest = decode_hex(text, _DIGEST_SIZE)
            if digest is not None:
                digests.append(digest)
    if timestamp is None:
        raise malformed()
    if not saw_v1:
        raise SignatureInvalid("unsupported signature version")
    if not digests:
        raise malformed()
    return timestamp, digests


class StripeVerifier(MacVerifier):
    def __init__(self, tolerance_s: int = DEFAULT_TOLERANCE_S) -> None:
        self._tolerance_s = check_tolerance(tolerance_s)

    def extract(self, request: SignedRequest, now: int) -> Signed:
        timestamp, digests = parse_header(required(request, _HEADER_KEY, "signature"))
        check_timestamp(timestamp, now, self._tolerance_s)
        return Signed((signed_payload(timestamp, request.body),), digests)

    def sign(
        self, key: bytes, body: bytes, now: int, *, event_id: str | None, url: str | None
    ) -> dict[str, str]:
        """Stripe has no id header: the event id travels in the body (`evt_...`)."""
        timestamp = str(now)
        digest = self.mac(key, signed_payload(timestamp, body))
        return {SIGNATURE_HEADER: f"t={timestamp},v1={digest.hex()}"}
