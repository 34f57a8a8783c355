"""Standard Webhooks 1.0 and Svix (the same algorithm under `svix-*` header names).

The key is the base64 text after `whsec_`, decoded; keying with the literal `whsec_...` string is
the classic bug. Only `v1` entries count: `v1a` is Ed25519, for which no public key is configured.
Svix falls back to the unbranded `webhook-*` names only when its own set is incomplete, as the
Svix libraries do.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from typing import Final, NamedTuple

from common.errors import SignatureInvalid
from common.signatures.base import (
    DEFAULT_TOLERANCE_S,
    MacVerifier,
    Signed,
    SignedRequest,
    check_timestamp,
    check_tolerance,
    configured,
    decode_base64,
    malformed,
)

_KEY_PREFIX: Final = "whsec_"
_DIGEST_SIZE: Final = 32


class HeaderNames(NamedTuple):
    id: str
    timestamp: str
    signature: str


STANDARD_HEADERS: Final = HeaderNames("webhook-id", "webhook-timestamp", "webhook-signature")
SVIX_HEADERS: Final = HeaderNames("svix-id", "svix-timestamp", "svix-signature")


def standard_key(secret: str) -> bytes | None:
    """Padding is optional in practice (the reference library appends `==`)."""
    text = secret.removeprefix(_KEY_PREFIX).rstrip("=")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:  # binascii.Error, or a character outside ASCII (a pasted "…")
        return None
    return key or None


def signed_content(msg_id: str, timestamp: str, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def parse_signatures(value: str) -> list[bytes]:
    """Unknown versions are skipped, a v1 entry that does not decode is skipped too."""
    digests: list[bytes] = []
    saw_v1 = False
    for entry in value.split(" "):
        version, _, text = entry.partition(",")
        if version != "v1":
            continue
        saw_v1 = True
        digest = decode_base64(text, _DIGEST_SIZE)
        if digest is not None:
            digests.append(digest)
    if not saw_v1:
        raise SignatureInvalid("unsupported signature version")
    if not digests:
        raise malformed()
    return digests


class StandardWebhooksVerifier(MacVerifier):
    def __init__(
        self, header_sets: Sequence[HeaderNames], tolerance_s: int = DEFAULT_TOLERANCE_S
    ) -> None:
        self._header_sets = tuple(
            HeaderNames(*(name.lower() for name in names)) for names in header_sets
        )
        self._tolerance_s = check_tolerance(tolerance_s)

    def keys(self, secrets: Sequence[str]) -> list[bytes]:
        keys = [key for key in map(standard_key, configured(secrets)) if key is not None]
        if not keys:
            raise SignatureInvalid("invalid secret configured")
        return keys

    def _headers(self, request: SignedRequest) -> tuple[str, str, str]:
        reported: tuple[str | None, ...] | None = None
        for names in self._header_sets:
            values = tuple(request.header(name) for name in names)
            msg_id, timestamp, signature = values
            if msg_id and timestamp and signature:
                return msg_id, timestamp, signature
            if reported is None or not any(reported):
                reported = values
        msg_id, timestamp, signature = reported or (None, None, None)
        missing = "signature" if not signature else "timestamp" if not timestamp else "id"
        raise SignatureInvalid(f"missing {missing} header")

    def extract(self, request: SignedRequest, now: int) -> Signed:
        msg_id, timestamp, signature = self._headers(request)
        digests = parse_signatures(signature)
        check_timestamp(timestamp, now, self._tolerance_s)
        return Signed((signed_content(msg_id, timestamp, request.body),), digests)

    def sign(
        self, key: bytes, body: bytes, now: int, *, event_id: str | None, url: str | None
    ) -> dict[str, str]:
        """Without an `event_id` every call is a new message, as with a real sender."""
        names = self._header_sets[0]
        msg_id = event_id if event_id is not None else f"msg_{uuid.uuid4().hex}"
        timestamp = str(now)
        digest = self.mac(key, signed_content(msg_id, timestamp, body))
        return {
            names.id: msg_id,
            names.timestamp: timestamp,
            names.signature: "v1," + base64.b64encode(digest).decode("ascii"),
        }
