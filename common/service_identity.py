"""Who may call each service-to-service surface, in either mode, from settings.

In GCP the callers are Google's (Pub/Sub push, Cloud Tasks, Cloud Scheduler) presenting
tokens for configured service accounts. Locally they are the stack's broker, task emulator,
scheduler and in-process clients, presenting tokens the stack signs with a key it keeps
under `<data_dir>/secrets/` and publishes at `/emulator/oauth2/v1/certs`. Either way the
same `OidcVerifier` checks them, and the audience is one rule: the worker's base URL (the
stack's URL locally); `/cron` may name its own with HOOKYARD_CRON_AUDIENCE.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from common.config import Settings
from common.errors import PublishError
from common.logging import get_logger
from common.oidc import (
    GOOGLE_ISSUERS,
    CallerVerifier,
    CertificateCache,
    NoCallers,
    OidcVerifier,
    TokenMinter,
)

if TYPE_CHECKING:
    from google.auth import crypt

log = get_logger(__name__)

Surface = Literal["pubsub", "tasks", "cron"]

LOCAL_CALLERS: dict[Surface, str] = {
    "pubsub": "pubsub-push@hookyard.local",
    "tasks": "cloud-tasks@hookyard.local",
    "cron": "cloud-scheduler@hookyard.local",
}
SIGNING_KEY_FILE = "oidc-signing-key.pem"
SIGNING_CERT_FILE = "oidc-signing-cert.pem"
LOCAL_ISSUER_PATH = "/emulator/oauth2"
LOCAL_CERTS_PATH = LOCAL_ISSUER_PATH + "/v1/certs"
_GCP_SETTING = {
    "pubsub": "HOOKYARD_PUSH_SERVICE_ACCOUNT",
    "tasks": "HOOKYARD_TASKS_SERVICE_ACCOUNT",
    "cron": "HOOKYARD_SCHEDULER_SERVICE_ACCOUNT",
}


def local_issuer(stack_url: str) -> str:
    return stack_url.rstrip("/") + LOCAL_ISSUER_PATH


def audience_for(surface: Surface, settings: Settings, base_url: str | None) -> str | None:
    """`base_url` is the worker's (gcp) or the stack's (local) base URL."""
    base = base_url.rstrip("/") if base_url else None
    if surface == "cron":
        return settings.cron_audience or base
    return base


def certificates_for(settings: Settings, stack_url: str | None = None) -> CertificateCache:
    """Where tokens' certificates come from: Google's in gcp, the stack's own locally. One
    cache per process serves every surface, so they are fetched once, not per surface."""
    if settings.env == "gcp":
        return CertificateCache(settings.oidc_certs_url)
    return CertificateCache(_local_stack(settings, stack_url) + LOCAL_CERTS_PATH)


def verifier_for(
    surface: Surface,
    settings: Settings,
    stack_url: str | None = None,
    certs: CertificateCache | None = None,
) -> CallerVerifier:
    """`stack_url` is the running local stack's address (its port may have been 0);
    without it, the configured one. `certs` shares one certificate cache between surfaces."""
    certs = certs or certificates_for(settings, stack_url)
    if settings.env == "gcp":
        email = {
            "pubsub": settings.push_service_account,
            "tasks": settings.tasks_service_account,
            "cron": settings.scheduler_service_account,
        }.get(surface)
        audience = audience_for(surface, settings, settings.worker_url)
        if not email or not audience:
            missing = [] if email else [_GCP_SETTING.get(surface, "nothing: local only")]
            if not audience:
                missing.append("HOOKYARD_WORKER_URL")
            log.error(
                "no caller configured: this endpoint refuses every request",
                surface=surface,
                missing=missing,
            )
            return NoCallers()
        return OidcVerifier(certs, GOOGLE_ISSUERS, audience, {email})
    stack = _local_stack(settings, stack_url)
    audience = audience_for(surface, settings, stack)
    assert audience is not None
    return OidcVerifier(certs, {local_issuer(stack)}, audience, {LOCAL_CALLERS[surface]})


def _local_stack(settings: Settings, stack_url: str | None) -> str:
    return (stack_url or settings.broker_url).rstrip("/")


def key_id(cert_pem: str) -> str:
    """Stable for a key pair, different between stacks: tokens name the certificate."""
    return hashlib.sha256(cert_pem.strip().encode("ascii")).hexdigest()[:20]


def load_local_signer(secrets_dir: Path) -> tuple[crypt.Signer, dict[str, str]]:
    """The stack's signer and its certificates `{kid: pem}`; `OSError` when the stack never
    generated its key there (`hookyard.local_identity` does, at start)."""
    from google.auth import crypt

    key_pem = (secrets_dir / SIGNING_KEY_FILE).read_text(encoding="ascii")
    cert_pem = (secrets_dir / SIGNING_CERT_FILE).read_text(encoding="ascii")
    kid = key_id(cert_pem)
    signer = crypt.RSASigner.from_string(key_pem, key_id=kid)  # type: ignore[no-untyped-call]
    return signer, {kid: cert_pem}


class LocalTokenFile:
    """A `TokenProvider` for a process beside the local stack (a deployed target run
    locally, the CLI): loads the stack's key on first use, since it may start first."""

    def __init__(self, settings: Settings, surface: Surface, stack_url: str | None = None) -> None:
        self._stack = _local_stack(settings, stack_url)
        self._secrets_dir = settings.data_dir / "secrets"
        self._email = LOCAL_CALLERS[surface]
        self._audience = audience_for(surface, settings, self._stack) or self._stack
        self._lock = threading.Lock()
        self._minter: TokenMinter | None = None

    def __call__(self) -> str:
        with self._lock:
            if self._minter is None:
                try:
                    signer, _ = load_local_signer(self._secrets_dir)
                except (OSError, ValueError) as exc:
                    raise PublishError(
                        f"no local signing key under {self._secrets_dir}: is the stack running?"
                    ) from exc
                self._minter = TokenMinter(signer, local_issuer(self._stack))
            minter = self._minter
        return minter.token(self._email, self._audience)
