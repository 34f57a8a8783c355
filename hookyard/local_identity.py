"""The local stack's token issuer: what Google's identity service is to Pub/Sub, Cloud Tasks
and Cloud Scheduler, for the broker, the task emulator and the local scheduler.

An RSA key and a self-signed certificate are generated once under `<data_dir>/secrets/`
(mode 0600, like the other generated secrets). The certificate is published in Google's
x509 format at `GET /emulator/oauth2/v1/certs`, where the workers' `OidcVerifier` fetches
it exactly as it fetches Google's in GCP.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask import Request, Response

from common.errors import Problem
from common.http import problem_response, require_method, secure
from common.oidc import TokenMinter, TokenProvider
from common.service_identity import (
    LOCAL_CALLERS,
    SIGNING_CERT_FILE,
    SIGNING_KEY_FILE,
    Surface,
    load_local_signer,
    local_issuer,
)

CERT_VALIDITY = dt.timedelta(days=3650)
# The certificate never changes while the files exist; verifiers may keep it an hour.
CERTS_MAX_AGE_S = 3600


def ensure_signing_key(secrets_dir: Path) -> bool:
    """Generates the key pair unless both files exist; True when it did."""
    key_path, cert_path = secrets_dir / SIGNING_KEY_FILE, secrets_dir / SIGNING_CERT_FILE
    if key_path.exists() and cert_path.exists():
        return False
    secrets_dir.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hookyard local issuer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + CERT_VALIDITY)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # The certificate first: a key without its certificate is regenerated next time.
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    _write_private(key_path, key_pem)
    return True


def _write_private(path: Path, data: bytes) -> None:
    """0600 from the first byte, then renamed into place, so no reader sees half a file."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


class LocalIdentity:
    """Mints the stack's service tokens and serves the certificate that verifies them."""

    def __init__(self, secrets_dir: Path, stack_url: str) -> None:
        ensure_signing_key(secrets_dir)
        self.stack_url = stack_url.rstrip("/")
        signer, self._certs = load_local_signer(secrets_dir)
        self.minter = TokenMinter(signer, local_issuer(self.stack_url))

    @property
    def issuer(self) -> str:
        return self.minter.issuer

    def token(self, surface: Surface, audience: str | None = None) -> str:
        """A token as `surface`'s local caller presents it (audience: the stack's URL)."""
        return self.minter.token(LOCAL_CALLERS[surface], audience or self.stack_url)

    def provider(self, surface: Surface, audience: str | None = None) -> TokenProvider:
        return self.minter.provider(LOCAL_CALLERS[surface], audience or self.stack_url)

    def handle_certs(self, request: Request) -> Response:
        """`GET /emulator/oauth2/v1/certs`, public as Google's is: certificates only."""
        try:
            require_method(request, "GET", "HEAD")
        except Problem as problem:
            return problem_response(problem, request.path)
        response = Response(json.dumps(self._certs), mimetype="application/json")
        response.headers["Cache-Control"] = f"public, max-age={CERTS_MAX_AGE_S}"
        return secure(response)
