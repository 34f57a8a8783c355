"""notify_url may not reach loopback (unless allowed), private, link-local or metadata
destinations: refused when configured, and judged again, after DNS, at delivery."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy.engine import Engine

from common.db import accounts, outbox
from common.egress import EgressPolicy
from common.secrets import EnvSecretStore
from tests.support.postgres import TestServer
from tests.support.receiver import receiver
from tests.support.stack import admin, running_stack, signed_stripe, stripe_event, wait_for
from workers.notifications import Notifier

SIGNING_KEY = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

FORBIDDEN = [
    "http://127.0.0.1/hook",
    "http://2130706433/hook",
    "http://0x7f000001/hook",
    "http://127.1/hook",
    "http://localhost:9/hook",  # a name: refused after resolution
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://169.254.169.254/computeMetadata/v1/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://METADATA.GOOGLE.INTERNAL./",
    "http://metadata/",
    "http://0.0.0.0/",
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://192.168.0.1/",
    "http://100.64.0.1/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://user:secret@hooks.example.com/",
]


def _put(client: httpx.Client, account: str, url: str | None) -> httpx.Response:
    return client.put(f"/admin/accounts/{account}", json={"currency": "usd", "notify_url": url})


def test_put_refuses_every_forbidden_notify_url_and_writes_nothing(
    pg_server: TestServer, database: str, tmp_path: Path
) -> None:
    with (
        running_stack(pg_server, database, tmp_path, notify_allow_loopback=False) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=10)) as client,
    ):
        public = "http://93.184.215.14/hook"
        assert _put(client, "kept", public).status_code == 201
        for url in FORBIDDEN:
            for account in ("fresh", "kept"):
                response = _put(client, account, url)
                assert response.status_code == 400, (url, response.text)
                assert response.headers["Content-Type"] == "application/problem+json"
                problem = response.json()
                assert problem["field"] == "notify_url", (url, problem)
                assert "secret" not in problem["detail"]
        assert client.get("/admin/accounts/fresh").status_code == 404
        assert client.get("/admin/accounts/kept").json()["notify_url"] == public
        # A name that does not resolve (yet) is accepted: delivery judges it again anyway.
        unresolved = "https://hooks.invalid/balance"
        accepted = _put(client, "later", unresolved)
        assert accepted.status_code == 201
        assert accepted.json()["notify_url"] == unresolved


def test_put_accepts_loopback_only_when_the_stack_allows_it(
    pg_server: TestServer, database: str, tmp_path: Path
) -> None:
    with (
        running_stack(pg_server, database, tmp_path, notify_allow_loopback=True) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=10)) as client,
    ):
        for url in ("http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]:9/"):
            ok = _put(client, "local", url)
            assert ok.status_code in (200, 201), (url, ok.text)
        for url in (
            "http://169.254.169.254/",
            "http://metadata.google.internal/",
            "http://10.0.0.1/",
        ):
            refused = _put(client, "local", url)
            assert refused.status_code == 400, url
            assert refused.json()["field"] == "notify_url"


def test_a_loopback_url_written_behind_the_api_is_never_called(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path
) -> None:
    """A URL valid when set, or DNS that changed since: delivery judges it, the receiver
    hears nothing, the attempt says why, and an operator finds a dead letter to act on."""
    with (
        receiver() as hook,
        running_stack(pg_server, database, tmp_path, notify_allow_loopback=False) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=10)) as client,
    ):
        _put(client, "sneaky", None)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE accounts SET notify_url = :url WHERE id = 'sneaky'"),
                         {"url": hook.url})  # fmt: skip
        body = stripe_event("evt_ssrf", "payment_intent.succeeded", "sneaky", amount_received=5)
        assert client.post("/webhooks/stripe", content=body,
                           headers=signed_stripe(body)).status_code == 202  # fmt: skip
        dead = wait_for(
            lambda: client.get("/admin/dead-letters").json()["items"], timeout=60, interval=0.2
        )
        account = client.get("/admin/accounts/sneaky").json()
    assert hook.received == []
    assert account["available"] == 5  # the ledger change itself is unaffected
    assert account["pending_notifications"] == 1  # replayable once the URL is fixed
    [letter] = dead
    assert letter["subscription"] == "tasks/notifications"
    assert letter["delivery_count"] == 1  # permanent: not retried
    assert "127.0.0.1 (loopback)" in letter["reason"]
    with engine.connect() as conn:
        attempts = conn.execute(
            sa.text("SELECT url, status, error FROM notification_attempts")
        ).all()
    assert [(a.url, a.status) for a in attempts] == [(hook.url, None)]
    assert attempts[0].error == "notify_url refused: points at 127.0.0.1 (loopback)"


def _lookup(answers: dict[str, list[str]]) -> Any:
    """A resolver that knows only `answers` (names no real DNS has), in getaddrinfo's shape."""

    def lookup(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers[host]
        ]

    return lookup


def _pending_notification(engine: Engine, url: str) -> bytes:
    with engine.begin() as conn:
        accounts.create(conn, "acct_pin", "usd", url)
        row_id = outbox.add(conn, "acct_pin", "balance.updated", {"type": "balance.updated"})
    return json.dumps({"outbox_id": row_id}).encode()


def _attempts(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT status, error FROM notification_attempts")))


def _notifier(engine: Engine, policy: EgressPolicy, lookup: Any, **kwargs: Any) -> Notifier:
    secrets = EnvSecretStore({"HOOKYARD_SECRET_NOTIFY_SIGNING_KEY": SIGNING_KEY})
    return Notifier(engine, secrets, egress=policy, lookup=lookup, **kwargs)


def test_a_name_that_resolves_to_loopback_at_delivery_is_refused(engine: Engine) -> None:
    with receiver() as hook:
        port = httpx.URL(hook.url).port
        task = _pending_notification(engine, f"http://rebound.test:{port}/hooks/balance")
        notifier = _notifier(engine, EgressPolicy(), _lookup({"rebound.test": ["127.0.0.1"]}))
        try:
            with pytest.raises(Exception, match=r"resolves to 127\.0\.0\.1 \(loopback\)"):
                notifier(task)
        finally:
            notifier.close()
    assert hook.received == []
    [attempt] = _attempts(engine)
    assert attempt.error == (
        "notify_url refused: host rebound.test resolves to 127.0.0.1 (loopback)"
    )


def test_delivery_connects_to_the_judged_address_with_the_name_in_host(engine: Engine) -> None:
    """`pinned.test` exists only in the Notifier's own lookup: if the HTTP client resolved
    the name again, the request could not arrive at all."""
    with receiver() as hook:
        port = httpx.URL(hook.url).port
        task = _pending_notification(engine, f"http://pinned.test:{port}/hooks/balance")
        lookup = _lookup({"pinned.test": ["127.0.0.1"]})
        notifier = _notifier(engine, EgressPolicy(allow_loopback=True), lookup)
        try:
            notifier(task)
        finally:
            notifier.close()
    [received] = hook.received
    assert received.headers["Host"] == f"pinned.test:{port}"
    assert [a.status for a in _attempts(engine)] == [204]


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A server certificate for `pinned.test` only, and the CA file that trusts it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pinned.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("pinned.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    return server, cert_file


def test_https_delivery_verifies_the_certificate_for_the_name_not_the_address(
    engine: Engine, tls_pair: tuple[ssl.SSLContext, Path]
) -> None:
    server_tls, ca_file = tls_pair
    with receiver(tls=server_tls) as hook:
        port = httpx.URL(hook.url).port
        task = _pending_notification(engine, f"https://pinned.test:{port}/hooks/balance")
        lookup = _lookup({"pinned.test": ["127.0.0.1"]})
        client_tls = ssl.create_default_context(cafile=str(ca_file))
        notifier = _notifier(engine, EgressPolicy(allow_loopback=True), lookup, tls=client_tls)
        try:
            notifier(task)
        finally:
            notifier.close()
    [received] = hook.received
    assert received.headers["Host"] == f"pinned.test:{port}"
    assert [(a.status, a.error) for a in _attempts(engine)] == [(204, None)]
