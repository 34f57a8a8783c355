"""The sending side: the headers a real sender would attach, for `hookyard send` and tests.

Signing goes through the same scheme objects as verification, so the two cannot disagree about
signed bytes, keys or header names. Problems here are the caller's configuration, hence
`ConfigError` rather than `SignatureInvalid`.
"""

from __future__ import annotations

from common.errors import ConfigError, SignatureInvalid
from common.signatures.base import DEFAULT_TOLERANCE_S, HmacOptions


def sign_headers(
    scheme: str,
    body: bytes,
    secret: str,
    *,
    now: int,
    event_id: str | None = None,
    url: str | None = None,
    hmac: HmacOptions | None = None,
) -> dict[str, str]:
    """`url` is required for Twilio; `event_id` fills the scheme's id header where one exists."""
    from common.signatures import build

    signer = build(scheme, DEFAULT_TOLERANCE_S, hmac)
    try:
        (key,) = signer.keys((secret,))
        return signer.sign(key, body, now, event_id=event_id, url=url)
    except SignatureInvalid as exc:
        raise ConfigError(f"cannot sign: {exc.detail}") from None
