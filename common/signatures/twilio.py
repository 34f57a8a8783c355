"""Twilio: `X-Twilio-Signature: <base64 HMAC-SHA1>` over the URL plus the decoded form fields.

Twilio signs parameters, not bytes: the full public URL it called, then every POST field as
name+value in sorted order, blank values included. JSON bodies are signed through a
`bodySHA256` query parameter instead. Twilio is inconsistent about default ports, so, like the
official SDKs, the URL is tried as given, with the default port and without any port.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from typing import Final, NamedTuple
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from common.errors import ConfigError, SignatureInvalid
from common.signatures.base import MacVerifier, Signed, SignedRequest, decode_digest, required

SIGNATURE_HEADER: Final = "X-Twilio-Signature"
_HEADER_KEY: Final = SIGNATURE_HEADER.lower()
_BODY_HASH_PARAM: Final = "bodySHA256"
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}
_DIGEST_SIZE: Final = 20
_JSON: Final = "application/json"
_FORM: Final = "application/x-www-form-urlencoded"


class _Url(NamedTuple):
    variants: tuple[str, ...]
    body_hashes: tuple[str, ...]


@lru_cache(maxsize=256)
def _parse_url(url: str) -> _Url:
    """Cached: a source's public URL is fixed configuration, so this runs once per URL."""
    parts = urlsplit(url)
    hashes = tuple(
        value
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if name == _BODY_HASH_PARAM
    )
    try:
        port = parts.port
    except ValueError:
        return _Url((url,), hashes)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host = hostport if port is None else hostport[: hostport.rindex(":")]
    variants = [url, urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}"))]
    default = _DEFAULT_PORTS.get(parts.scheme)
    if port is None and default is not None:
        variants.append(urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}:{default}")))
    return _Url(tuple(dict.fromkeys(variants)), hashes)


def body_hash_url(url: str, body: bytes) -> str:
    """The URL Twilio calls for a JSON body: the body is bound to the signature through it."""
    separator = "&" if urlsplit(url).query else "?"
    return f"{url}{separator}{_BODY_HASH_PARAM}={hashlib.sha256(body).hexdigest()}"


def _is_json(request: SignedRequest) -> bool:
    content_type = request.content_type or request.header("content-type") or ""
    return content_type.split(";", 1)[0].strip().lower() == _JSON


def _form_fields(body: bytes) -> str:
    """Sorting (name, value) pairs also orders repeated names by value, as twilio-python does."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise SignatureInvalid("malformed body") from None
    return "".join(name + value for name, value in sorted(pairs))


def _signed_suffix(url: _Url, body: bytes, json_body: bool) -> str:
    if not (json_body or url.body_hashes):
        return _form_fields(body)
    if not url.body_hashes:
        raise SignatureInvalid("missing body hash")
    if url.body_hashes != (hashlib.sha256(body).hexdigest(),):
        raise SignatureInvalid("body hash mismatch")
    return ""


class TwilioVerifier(MacVerifier):
    algorithm = "sha1"

    def extract(self, request: SignedRequest, now: int) -> Signed:
        received = decode_digest(
            required(request, _HEADER_KEY, "signature"), "base64", _DIGEST_SIZE
        )
        if not request.url:
            raise SignatureInvalid("missing request url")
        url = _parse_url(request.url)
        suffix = _signed_suffix(url, request.body, _is_json(request))
        return Signed(tuple((variant + suffix).encode() for variant in url.variants), (received,))

    def sign(
        self, key: bytes, body: bytes, now: int, *, event_id: str | None, url: str | None
    ) -> dict[str, str]:
        """Form bodies unless `url` carries `bodySHA256` (see `body_hash_url`).

        Content-Type is part of the result because it decides what the receiver verifies.
        """
        if not url:
            raise ConfigError("twilio signing needs the public url")
        parsed = _parse_url(url)
        suffix = _signed_suffix(parsed, body, json_body=False)
        digest = self.mac(key, (url + suffix).encode())
        return {
            SIGNATURE_HEADER: base64.b64encode(digest).decode("ascii"),
            "Content-Type": _JSON if parsed.body_hashes else _FORM,
        }
