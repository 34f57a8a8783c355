"""Who may operate `/admin` with a Google ID token instead of the shared admin token.

An operator signs in as themselves (`gcloud auth print-identity-token`, IAP, an OAuth
client), so the audit trail names a person, not "whoever holds the admin token". Their
tokens are Google's in every mode: the same `OidcVerifier` as the service surfaces, against
HOOKYARD_OIDC_CERTS_URL, for HOOKYARD_ADMIN_AUDIENCE and the emails in
HOOKYARD_ADMIN_OPERATORS. Without both settings no ID token is accepted.
"""

from __future__ import annotations

import re

from flask import Request

from common.config import Settings
from common.errors import Unauthorized
from common.logging import get_logger
from common.oidc import GOOGLE_ISSUERS, Caller, CallerVerifier, CertificateCache, OidcVerifier

log = get_logger(__name__)

# A JWS in compact form; the admin token (`token_urlsafe`) has no dots, so never looks like one.
_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def is_jwt(token: str) -> bool:
    """Whether a bearer token is meant as an ID token (then only the verifier may accept it)."""
    return _JWT.fullmatch(token) is not None


class NoOperators:
    """Operators not configured: ID tokens are refused, the admin token still works."""

    def __init__(self, detail: str) -> None:
        self._detail = detail

    def verify(self, request: Request) -> Caller:
        raise Unauthorized(self._detail)


def operator_verifier(settings: Settings) -> CallerVerifier:
    """The verifier `Admin` takes as `operators`, in every mode."""
    operators = {email.strip() for email in settings.admin_operators if email.strip()}
    if not operators:
        return NoOperators("ID tokens are not accepted here: no operators are configured")
    if not settings.admin_audience:
        log.error(
            "operators configured without an audience: their ID tokens are refused",
            missing=["HOOKYARD_ADMIN_AUDIENCE"],
        )
        return NoOperators("ID tokens are not accepted here: no audience is configured")
    certs = CertificateCache(settings.oidc_certs_url)
    return OidcVerifier(certs, GOOGLE_ISSUERS, settings.admin_audience, operators)
