"""OIDC ID tokens between services: one verifier for every mode, and a minter that caches.

Pub/Sub push, Cloud Tasks and Cloud Scheduler present Google-signed ID tokens in GCP; the
local stack's broker, task emulator and scheduler present tokens the stack signs itself.
Both are checked here, by the same code, against certificates published in Google's x509
format (`{kid: pem}`, as https://www.googleapis.com/oauth2/v1/certs serves them), so what
passes locally is what passes in production. A refusal names the failure class only.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from flask import Request

from common.errors import ServiceUnavailable, Unauthorized
from common.logging import get_logger

if TYPE_CHECKING:
    from google.auth import crypt

log = get_logger(__name__)

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
VERIFIED_TTL_S = 300.0
VERIFIED_MAX = 1024
"""Tokens remembered as verified: a few per caller, so a bound only against a flood."""
GOOGLE_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})
CLOCK_SKEW_S = 60
DEFAULT_CERTS_TTL_S = 3600.0
# A server saying max-age=0 must not turn verification into a fetch per request.
MIN_CERTS_TTL_S = 60.0
# How often an unknown `kid` (key rotation) or a failed fetch may cause another fetch.
REFETCH_INTERVAL_S = 30.0
CERTS_FETCH_TIMEOUT_S = 5.0
# How long expired certificates still serve while their endpoint cannot be reached.
STALE_GRACE_S = 3600.0
TOKEN_LIFETIME_S = 3600
# A cached token is replaced this long before it expires, so none arrives stale.
REMINT_MARGIN_S = 300
MAX_TOKEN_CHARS = 8192

TokenProvider = Callable[[], str]
"""Returns a current bearer token for one (caller, audience); cheap to call per request."""
CertsFetcher = Callable[[str], tuple[dict[str, str], float | None]]
"""Fetches `{kid: pem}` from a URL, with the response's max-age if it gave one."""


@dataclass(frozen=True, slots=True)
class Caller:
    email: str
    claims: Mapping[str, Any]


class CallerVerifier(Protocol):
    def verify(self, request: Request) -> Caller:
        """The verified caller; raises `Unauthorized`, or `ServiceUnavailable` when the
        signing certificates cannot be had (never 'allow')."""
        ...


class NoCallers:
    """A surface with no configured caller refuses everyone (fail closed)."""

    def verify(self, request: Request) -> Caller:
        raise Unauthorized("no caller is configured for this endpoint")


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token")
    return token


class CertificateCache:
    """`{kid: pem}` from one URL, kept for the response's max-age (default an hour).

    An unknown `kid` refetches at most once per `refetch_interval_s`, which is how a key
    rotation is picked up without letting forged `kid`s turn into a fetch per request.
    """

    def __init__(
        self,
        url: str,
        fetch: CertsFetcher | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        refetch_interval_s: float = REFETCH_INTERVAL_S,
    ) -> None:
        self.url = url
        self._fetch = fetch or fetch_certs
        self._clock = clock
        self._refetch_interval_s = refetch_interval_s
        self._lock = threading.Lock()
        self._certs: dict[str, str] | None = None
        self._fetched_at = 0.0
        self._expires_at = 0.0
        self._failed_at: float | None = None

    def pem_for(self, kid: str) -> str | None:
        """The certificate for `kid`, None when the issuer does not publish it; raises
        `ServiceUnavailable` when it could not be checked."""
        with self._lock:
            now = self._clock()
            certs = self._certs
            fresh = certs is not None and now < self._expires_at
            # An unknown `kid` may be a new key: look again, unless we just did.
            looked_lately = now - self._fetched_at < self._refetch_interval_s
            if fresh and certs is not None and (kid in certs or looked_lately):
                return certs.get(kid)
            if self._failed_at is None or now - self._failed_at >= self._refetch_interval_s:
                fetched = self._refresh(now)
                if fetched is not None:
                    return fetched.get(kid)
            # Issuers publish keys well before use and keep them after: while the endpoint
            # is down, what it published lately still verifies.
            stale = certs is not None and now < self._expires_at + STALE_GRACE_S
            if stale and certs is not None and kid in certs:
                return certs[kid]
            raise ServiceUnavailable("token signing certificates are unavailable; retry later")

    def _refresh(self, now: float) -> dict[str, str] | None:
        try:
            certs, max_age = self._fetch(self.url)
        except Exception as exc:
            self._failed_at = now
            log.warning(
                "could not fetch token signing certificates",
                certs_url=self.url,
                error_class=type(exc).__name__,
            )
            return None
        ttl = DEFAULT_CERTS_TTL_S if max_age is None else max(max_age, MIN_CERTS_TTL_S)
        self._certs, self._fetched_at, self._expires_at = certs, now, now + ttl
        self._failed_at = None
        return certs


_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*(\d+)", re.IGNORECASE)


def fetch_certs(url: str) -> tuple[dict[str, str], float | None]:
    import httpx

    response = httpx.get(url, timeout=CERTS_FETCH_TIMEOUT_S)
    response.raise_for_status()
    document = response.json()
    if not isinstance(document, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in document.items()
    ):
        raise ValueError("certificates are not a {kid: pem} object")
    match = _MAX_AGE.search(response.headers.get("Cache-Control", ""))
    return document, float(match[1]) if match else None


class OidcVerifier:
    """Signature (RS256, a certificate from `certs`), `iat`/`exp` with a small skew, the
    audience, an allowed issuer, and a verified `email` among `allowed_emails`."""

    def __init__(
        self,
        certs: CertificateCache | str,
        issuers: Collection[str],
        audience: str,
        allowed_emails: Collection[str],
        *,
        clock: Callable[[], float] = time.time,
        remembered: int = VERIFIED_MAX,
    ) -> None:
        self._certs = certs if isinstance(certs, CertificateCache) else CertificateCache(certs)
        self._remembered = remembered
        self._issuers = frozenset(issuers)
        self._audience = audience
        self._allowed = frozenset(allowed_emails)
        self._clock = clock
        self._verified: OrderedDict[bytes, tuple[Caller, float]] = OrderedDict()
        self._verified_lock = threading.Lock()

    def verify(self, request: Request) -> Caller:
        return self.verify_token(bearer_token(request.headers.get("Authorization")))

    def verify_token(self, token: str) -> Caller:
        """A caller sends the same token until it nears expiry (Pub/Sub, Cloud Tasks and
        Scheduler each reuse theirs), so a token verified once is remembered, by its hash, for
        a few minutes or until it expires: the RSA check and three decodes run once per token,
        not once per push. Only accepted tokens are remembered."""
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("malformed token")
        key = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        now = self._clock()
        with self._verified_lock:
            hit = self._verified.get(key)
        if hit is not None and now <= hit[1]:
            return hit[0]
        try:
            caller = self._verify(token)
        except Unauthorized as refused:
            log.warning("service call refused", reason=refused.detail)
            raise
        exp = caller.claims.get("exp")
        if isinstance(exp, int | float):
            with self._verified_lock:
                self._verified[key] = (caller, min(exp + CLOCK_SKEW_S, now + VERIFIED_TTL_S))
                self._verified.move_to_end(key)
                while len(self._verified) > self._remembered:
                    self._verified.popitem(last=False)
        return caller

    def _verify(self, token: str) -> Caller:
        from google.auth import jwt
        from google.auth.exceptions import GoogleAuthError

        # google-auth parses each segment with json.loads, which recurses once per level of
        # nesting: a header of a few thousand `[` is a RecursionError, not a ValueError.
        try:
            header = jwt.decode_header(token)  # type: ignore[no-untyped-call]
            unverified = jwt.decode(token, verify=False)  # type: ignore[no-untyped-call]
        except (ValueError, TypeError, RecursionError, GoogleAuthError) as exc:
            raise Unauthorized("malformed token") from exc
        if header.get("alg") != "RS256":
            raise Unauthorized("unsupported token algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("token names no signing key")
        self._check_times(unverified)
        pem = self._certs.pem_for(kid)
        if pem is None:
            raise Unauthorized("token signed by an unknown key")
        try:
            claims: Mapping[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
                token, certs={kid: pem}, audience=None, clock_skew_in_seconds=CLOCK_SKEW_S
            )
        except (ValueError, TypeError, RecursionError, GoogleAuthError) as exc:
            raise Unauthorized("invalid token signature") from exc
        if claims.get("iss") not in self._issuers:
            raise Unauthorized("token from an unexpected issuer")
        if claims.get("aud") != self._audience:
            raise Unauthorized("token for another audience")
        email = claims.get("email")
        if not isinstance(email, str) or email not in self._allowed:
            raise Unauthorized("token from a caller not allowed here")
        if claims.get("email_verified") is not True:
            raise Unauthorized("token email is not verified")
        return Caller(email, claims)

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int | float) or not isinstance(exp, int | float):
            raise Unauthorized("token lacks iat or exp")
        now = self._clock()
        if exp + CLOCK_SKEW_S < now:
            raise Unauthorized("token expired")
        if iat - CLOCK_SKEW_S > now:
            raise Unauthorized("token issued in the future")


@dataclass(frozen=True, slots=True)
class _Minted:
    token: str
    expires_at: float


class TokenMinter:
    """Signs Google-shaped ID tokens for (email, audience) and reuses each until shortly
    before it expires: signing is an RSA operation, too slow to repeat per request."""

    def __init__(
        self,
        signer: crypt.Signer,
        issuer: str,
        *,
        lifetime_s: int = TOKEN_LIFETIME_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self._signer = signer
        self._lifetime_s = lifetime_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], _Minted] = {}

    def token(self, email: str, audience: str) -> str:
        from google.auth import jwt

        now = self._clock()
        with self._lock:
            cached = self._cache.get((email, audience))
            if cached is not None and cached.expires_at - now > REMINT_MARGIN_S:
                return cached.token
            issued = int(now)
            claims = {
                "iss": self.issuer, "aud": audience, "sub": email, "azp": email,
                "email": email, "email_verified": True,
                "iat": issued, "exp": issued + self._lifetime_s,
            }  # fmt: skip
            encoded: bytes = jwt.encode(self._signer, claims)  # type: ignore[no-untyped-call]
            token = encoded.decode("ascii")
            self._cache[(email, audience)] = _Minted(token, issued + self._lifetime_s)
            return token

    def provider(self, email: str, audience: str) -> TokenProvider:
        return partial(self.token, email, audience)
