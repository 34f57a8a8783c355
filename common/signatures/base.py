"""What every inbound signature scheme shares.

Each scheme is "an HMAC over some bytes, compared with digests taken from headers"; only which
bytes, which key and how the digest is written differ. The fail-closed parts (no secret means
reject, strict decoding, equal-length constant-time comparison, the replay window) live here once
so that no scheme can get them subtly wrong on its own.
"""

from __future__ import annotations

import base64
import hmac
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple, Protocol

from common.errors import ConfigError, SignatureInvalid

Algorithm = Literal["sha256", "sha512"]
Encoding = Literal["hex", "base64"]

DEFAULT_TOLERANCE_S: Final = 300
DIGEST_SIZES: Final[dict[str, int]] = {"sha1": 20, "sha256": 32, "sha512": 64}
# Unix seconds have 10 digits until 2286; the cap keeps int() away from huge attacker strings.
_MAX_TIMESTAMP_DIGITS: Final = 15


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A request exactly as received: signatures cover these bytes, never a re-parsed form."""

    headers: Sequence[tuple[str, str]]
    body: bytes
    url: str | None = None
    content_type: str | None = None

    def header(self, name: str) -> str | None:
        """HTTP/2 lower-cases names, so match any case; two copies are ambiguous, so reject."""
        wanted = name.lower()
        found: str | None = None
        for key, value in self.headers:
            if key.lower() == wanted:
                if found is not None:
                    raise SignatureInvalid(f"duplicate {wanted} header")
                found = value
        return found


class Verifier(Protocol):
    def verify(self, request: SignedRequest, secrets: Sequence[str], now: int) -> None:
        """Returns None if valid, else raises common.errors.SignatureInvalid(detail)."""
        ...


@dataclass(frozen=True)
class HmacOptions:
    """Settings of the generic `hmac` scheme; a timestamp header switches to `{ts}.{body}`."""

    header: str
    algorithm: Algorithm = "sha256"
    encoding: Encoding = "hex"
    prefix: str = ""
    timestamp_header: str | None = None


class Signed(NamedTuple):
    """The bytes a sender may have signed and the digests it sent; any pair may match."""

    messages: Sequence[bytes]
    digests: Sequence[bytes]


def configured(secrets: Sequence[str]) -> list[str]:
    """An empty key makes an HMAC anyone can forge, so blank values count as no secret at all."""
    if isinstance(secrets, str):
        raise TypeError("secrets must be a sequence of values, not one str")
    usable = [secret for secret in secrets if secret.strip()]
    if not usable:
        raise SignatureInvalid("no secret configured")
    return usable


def required(request: SignedRequest, name: str, what: str) -> str:
    value = request.header(name)
    if not value:
        raise SignatureInvalid(f"missing {what} header")
    return value


def malformed() -> SignatureInvalid:
    return SignatureInvalid("malformed signature header")


def decode_hex(text: str, size: int) -> bytes | None:
    """Lower-case only, as senders emit it: a second spelling of one digest is a forgery surface."""
    if len(text) != 2 * size:
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if raw.hex() == text else None


def decode_base64(text: str, size: int) -> bytes | None:
    """Standard alphabet, padded, canonical (unused trailing bits must be zero)."""
    if len(text) != 4 * ((size + 2) // 3):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    if len(raw) != size or base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


def decode_digest(text: str, encoding: Encoding, size: int) -> bytes:
    raw = decode_hex(text, size) if encoding == "hex" else decode_base64(text, size)
    if raw is None:
        raise malformed()
    return raw


def encode_digest(raw: bytes, encoding: Encoding) -> str:
    return raw.hex() if encoding == "hex" else base64.b64encode(raw).decode("ascii")


def check_timestamp(text: str, now: int, tolerance_s: int) -> None:
    """Both directions: a far-future timestamp is as replayable as an old one."""
    if not (len(text) <= _MAX_TIMESTAMP_DIGITS and text.isascii() and text.isdigit()):
        raise SignatureInvalid("malformed timestamp")
    if abs(now - int(text)) > tolerance_s:
        raise SignatureInvalid("timestamp outside tolerance")


def check_tolerance(tolerance_s: int) -> int:
    if tolerance_s < 0:
        raise ConfigError("signature tolerance must not be negative")
    return tolerance_s


class MacVerifier(ABC):
    """Template for every scheme; the sender's side sits beside the receiver's so they can't drift.

    The secret check runs before anything else so a misconfigured source never computes a MAC,
    and every (secret, message, digest) combination is tried so rotation on either side works.
    """

    algorithm: str = "sha256"

    def verify(self, request: SignedRequest, secrets: Sequence[str], now: int) -> None:
        keys = self.keys(secrets)
        signed = self.extract(request, now)
        for key in keys:
            for message in signed.messages:
                expected = self.mac(key, message)
                for received in signed.digests:
                    if hmac.compare_digest(expected, received):
                        return
        raise SignatureInvalid("signature mismatch")

    def keys(self, secrets: Sequence[str]) -> list[bytes]:
        return [secret.encode("utf-8") for secret in configured(secrets)]

    def mac(self, key: bytes, message: bytes) -> bytes:
        return hmac.digest(key, message, self.algorithm)

    @abstractmethod
    def extract(self, request: SignedRequest, now: int) -> Signed:
        """Validate headers and timestamp; raise SignatureInvalid with a failure class."""

    @abstractmethod
    def sign(
        self, key: bytes, body: bytes, now: int, *, event_id: str | None, url: str | None
    ) -> dict[str, str]:
        """The headers a real sender would attach to `body`."""


class SingleDigestVerifier(MacVerifier):
    """One digest in one header, behind an optional literal prefix, with an optional timestamp.

    GitHub, Shopify, Slack and the generic scheme are all this shape; they differ only in
    names, encoding and (Slack) how the timestamp joins the body.
    """

    def __init__(
        self,
        *,
        header: str,
        prefix: str = "",
        encoding: Encoding = "hex",
        algorithm: str = "sha256",
        timestamp_header: str | None = None,
        tolerance_s: int = DEFAULT_TOLERANCE_S,
        id_header: str | None = None,
    ) -> None:
        self.algorithm = algorithm
        self._header = header
        self._header_key = header.lower()
        self._prefix = prefix
        self._encoding: Encoding = encoding
        self._size = DIGEST_SIZES[algorithm]
        self._timestamp_header = timestamp_header
        self._timestamp_key = timestamp_header.lower() if timestamp_header else None
        self._tolerance_s = check_tolerance(tolerance_s)
        self._id_header = id_header

    def signed_message(self, timestamp: str | None, body: bytes) -> bytes:
        return body if timestamp is None else f"{timestamp}.".encode() + body

    def extract(self, request: SignedRequest, now: int) -> Signed:
        value = required(request, self._header_key, "signature")
        if not value.startswith(self._prefix):
            raise malformed()
        received = decode_digest(value[len(self._prefix) :], self._encoding, self._size)
        timestamp = None
        if self._timestamp_key is not None:
            timestamp = required(request, self._timestamp_key, "timestamp")
            check_timestamp(timestamp, now, self._tolerance_s)
        return Signed((self.signed_message(timestamp, request.body),), (received,))

    def sign(
        self, key: bytes, body: bytes, now: int, *, event_id: str | None, url: str | None
    ) -> dict[str, str]:
        timestamp = None if self._timestamp_header is None else str(now)
        digest = self.mac(key, self.signed_message(timestamp, body))
        headers = {self._header: self._prefix + encode_digest(digest, self._encoding)}
        if self._timestamp_header is not None and timestamp is not None:
            headers[self._timestamp_header] = timestamp
        if self._id_header is not None and event_id is not None:
            headers[self._id_header] = event_id
        return headers
