"""Inbound webhook signature verification, one scheme per sender family.

Build a verifier once per source with `verifier_for` (configuration errors surface at start-up as
`ConfigError`), then call `verify(request, secrets, now)` on the ingest path: it returns None or
raises `SignatureInvalid` whose detail names a failure class and never a secret or a signature.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from common.errors import ConfigError, SignatureInvalid
from common.signatures.base import (
    DEFAULT_TOLERANCE_S,
    HmacOptions,
    MacVerifier,
    SignedRequest,
    Verifier,
)
from common.signatures.github import GitHubVerifier
from common.signatures.hmac_generic import GenericHmacVerifier
from common.signatures.shopify import ShopifyVerifier
from common.signatures.signing import sign_headers
from common.signatures.slack import SlackVerifier
from common.signatures.standard_webhooks import (
    STANDARD_HEADERS,
    SVIX_HEADERS,
    StandardWebhooksVerifier,
)
from common.signatures.stripe import StripeVerifier
from common.signatures.twilio import TwilioVerifier, body_hash_url

Factory = Callable[[int, HmacOptions | None], MacVerifier]


def _generic(tolerance_s: int, options: HmacOptions | None) -> MacVerifier:
    if options is None:
        raise ConfigError("scheme 'hmac' needs HmacOptions")
    return GenericHmacVerifier(options, tolerance_s)


SCHEMES: Final[Mapping[str, Factory]] = MappingProxyType(
    {
        "standard-webhooks": lambda tolerance_s, _: StandardWebhooksVerifier(
            (STANDARD_HEADERS,), tolerance_s
        ),
        "svix": lambda tolerance_s, _: StandardWebhooksVerifier(
            (SVIX_HEADERS, STANDARD_HEADERS), tolerance_s
        ),
        "stripe": lambda tolerance_s, _: StripeVerifier(tolerance_s),
        "github": lambda _tolerance_s, _: GitHubVerifier(),
        "shopify": lambda _tolerance_s, _: ShopifyVerifier(),
        "slack": lambda tolerance_s, _: SlackVerifier(tolerance_s),
        "twilio": lambda _tolerance_s, _: TwilioVerifier(),
        "hmac": _generic,
    }
)


def build(scheme: str, tolerance_s: int, hmac: HmacOptions | None) -> MacVerifier:
    """`verifier_for` with the signing side exposed (used by `signing`)."""
    factory = SCHEMES.get(scheme)
    if factory is None:
        raise ConfigError(f"unknown signature scheme {scheme!r}")
    if hmac is not None and scheme != "hmac":
        raise ConfigError(f"HmacOptions given for scheme {scheme!r}")
    return factory(tolerance_s, hmac)


def verifier_for(
    scheme: str, *, tolerance_s: int = DEFAULT_TOLERANCE_S, hmac: HmacOptions | None = None
) -> Verifier:
    return build(scheme, tolerance_s, hmac)


__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SCHEMES",
    "HmacOptions",
    "SignatureInvalid",
    "SignedRequest",
    "Verifier",
    "body_hash_url",
    "sign_headers",
    "verifier_for",
]
