"""Builds a request exactly as a source's sender would: signature, id and type headers.

`hookyard send` and the tests use it, so what they post is what the real sender posts.
"""

from __future__ import annotations

import secrets as pysecrets

from common.signatures import HmacOptions, body_hash_url, sign_headers
from common.topology import Source


def sender_request(
    source: Source,
    body: bytes,
    secret: str,
    *,
    now: int,
    url: str,
    event_id: str | None = None,
    event_type: str | None = None,
    media_type: str | None = None,
) -> tuple[str, dict[str, str]]:
    """The URL to post to and the headers. Twilio binds a JSON body through the URL."""
    media_type = media_type or source.content_types[0]
    if source.scheme == "twilio" and media_type == "application/json":
        url = body_hash_url(url, body)
    delivery_id = event_id or f"msg_{pysecrets.token_hex(12)}"
    options = HmacOptions(**source.hmac.model_dump()) if source.hmac else None
    headers = sign_headers(
        source.scheme, body, secret, now=now, event_id=delivery_id, url=url, hmac=options
    )
    present = {name.lower() for name in headers}
    for ref in source.event_id[:1]:
        if ref.header and ref.header.lower() not in present:
            headers[ref.header] = delivery_id
    if event_type is not None:
        for ref in source.event_type[:1]:
            if ref.header:
                headers[ref.header] = event_type
    if "content-type" not in present:
        headers["Content-Type"] = media_type
    return url, headers
