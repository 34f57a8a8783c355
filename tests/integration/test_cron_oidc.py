"""/cron in GCP mode: only the scheduler's OIDC token gets in, verified by google-auth
against certificates served over a real socket (a stand-in for Google's certs endpoint)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from common.messaging.tasks import TaskRequest
from common.topology import get_topology
from functions.cron import CronIngest, OidcAuthorizer
from hookyard.server import create_app

AUDIENCE = "https://cron.example.run.app"
SCHEDULER = "scheduler@proj.iam.gserviceaccount.com"


def _key_and_cert() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem, cert.public_bytes(serialization.Encoding.PEM).decode()


class _Recorder:
    def __init__(self) -> None:
        self.names: list[str | None] = []

    def enqueue(self, task: TaskRequest) -> bool:
        self.names.append(task.name)
        return True


@pytest.fixture(scope="module")
def keys() -> tuple[str, str, str]:
    private, cert = _key_and_cert()
    other_private, _ = _key_and_cert()
    return private, cert, other_private


@pytest.fixture
def cron_url(keys: tuple[str, str, str]) -> Iterator[tuple[str, _Recorder]]:
    _, cert, _ = keys
    served = Response(json.dumps({"kid-1": cert}), mimetype="application/json")
    certs = make_server("127.0.0.1", 0, served)
    recorder = _Recorder()
    certs_url = f"http://127.0.0.1:{certs.server_port}/certs"
    authorizer = OidcAuthorizer(AUDIENCE, SCHEDULER, certs_url=certs_url)
    ingest = CronIngest(get_topology(), lambda: recorder, authorizer)
    app = make_server("127.0.0.1", 0, create_app({"cron": ingest.handle}), threaded=True)
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1})
               for s in (certs, app)]  # fmt: skip
    for t in threads:
        t.start()
    try:
        yield f"http://127.0.0.1:{app.server_port}", recorder
    finally:
        for server in (certs, app):
            server.shutdown()
            server.server_close()
        for t in threads:
            t.join(timeout=60)


def _token(private_pem: str, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com", "aud": AUDIENCE, "email": SCHEDULER,
        "email_verified": True, "sub": "1", "iat": now, "exp": now + 3600, **overrides,
    }  # fmt: skip
    signer = crypt.RSASigner.from_string(private_pem, key_id="kid-1")
    return jwt.encode(signer, claims).decode()


def _post(url: str, token: str | None) -> httpx.Response:
    headers = {"X-CloudScheduler-ScheduleTime": "2026-11-23T00:05:00Z"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{url}/cron/reconcile", headers=headers, timeout=60)


def test_the_schedulers_token_is_accepted(
    cron_url: tuple[str, _Recorder], keys: tuple[str, str, str]
) -> None:
    url, recorder = cron_url
    response = _post(url, _token(keys[0]))
    assert response.status_code == 202, response.text
    assert recorder.names == ["reconcile-20261123T000500Z"]


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("wrong audience", {"aud": "https://elsewhere.example"}),
        ("wrong account", {"email": "intruder@proj.iam.gserviceaccount.com"}),
        ("unverified email", {"email_verified": False}),
        ("expired", {"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}),
        ("wrong issuer", {"iss": "https://evil.example"}),
    ],
)
def test_other_tokens_are_refused(
    cron_url: tuple[str, _Recorder], keys: tuple[str, str, str], case: str,
    overrides: dict[str, Any],
) -> None:  # fmt: skip
    url, recorder = cron_url
    response = _post(url, _token(keys[0], **overrides))
    assert response.status_code == 401, case
    assert recorder.names == []


def test_missing_or_forged_tokens_are_refused(
    cron_url: tuple[str, _Recorder], keys: tuple[str, str, str]
) -> None:
    url, recorder = cron_url
    assert _post(url, None).status_code == 401
    assert _post(url, _token(keys[2])).status_code == 401  # signed by a key Google never issued
    assert recorder.names == []
