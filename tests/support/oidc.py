"""A stand-in for Google's token service: a signing key, its certificate served over a real
socket in the v1 certs format, and tokens with whatever claims a test needs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from google.auth import crypt, jwt
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from common.oidc import GOOGLE_ISSUERS
from common.service_identity import load_local_signer
from hookyard.local_identity import ensure_signing_key

GOOGLE_ISSUER = "https://accounts.google.com"
assert GOOGLE_ISSUER in GOOGLE_ISSUERS


class FakeGoogle:
    def __init__(self, key_dir: Path) -> None:
        ensure_signing_key(key_dir)
        self.signer: crypt.Signer
        self.signer, self.certs = load_local_signer(key_dir)
        self.certs_fetches = 0
        self.certs_url = ""
        self.max_age: int | None = None
        self.failing = False

    def token(self, audience: str, email: str, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": GOOGLE_ISSUER, "aud": audience, "email": email, "email_verified": True,
            "sub": "1", "azp": email, "iat": now, "exp": now + 3600, **overrides,
        }  # fmt: skip
        encoded: bytes = jwt.encode(self.signer, claims)  # type: ignore[no-untyped-call]
        return encoded.decode()

    def _serve_certs(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.certs_fetches += 1
        if self.failing:
            return Response("unavailable", status=503)(environ, start_response)
        response = Response(json.dumps(self.certs), mimetype="application/json")
        if self.max_age is not None:
            response.headers["Cache-Control"] = f"public, max-age={self.max_age}"
        return response(environ, start_response)


@contextmanager
def fake_google(key_dir: Path) -> Iterator[FakeGoogle]:
    google = FakeGoogle(key_dir)
    server = make_server("127.0.0.1", 0, google._serve_certs, threaded=True)
    google.certs_url = f"http://127.0.0.1:{server.server_port}/oauth2/v1/certs"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield google
    finally:
        server.shutdown()
        thread.join(timeout=60)
        server.server_close()
