"""The secret search (chaos run, dev logs, every test's output) finds each kind of leak."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.chaos.run import _secret_hits

SIGNATURE = hashlib.sha256(b"sent").hexdigest()
CLEAN = b'{"severity": "INFO", "message": "webhook accepted", "body_sha256": "%s"}\n' % (
    hashlib.sha256(b"body").hexdigest().encode()
)


def _log(tmp_path: Path, extra: bytes = b"") -> Path:
    path = tmp_path / "stack.log"
    path.write_bytes(CLEAN * 3 + extra)
    return path


def test_a_clean_log_has_no_hits(tmp_path: Path) -> None:
    assert _secret_hits(_log(tmp_path), ["whsec_abcdefgh12345678"], {SIGNATURE}) == []


def test_each_kind_of_leak_is_found(tmp_path: Path) -> None:
    secret = "whsec_abcdefgh12345678"
    assert _secret_hits(_log(tmp_path, secret.encode()), [secret], set()) == ["secret whse…"]
    leaked = b'{"stripe-signature": "t=1,v1=%s"}' % SIGNATURE.encode()
    assert _secret_hits(_log(tmp_path, leaked), [], {SIGNATURE}) == [f"signature {SIGNATURE[:8]}…"]
    token = b"Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXBhcnQ"
    assert _secret_hits(_log(tmp_path, token), [], set()) == ["token eyJhbGciOiJS…"]


def test_only_signature_headers_are_recorded() -> None:
    from tests.support.secret_scan import SIGNATURES, record_signatures

    signature = "v1," + "A" * 43 + "="
    record_signatures(
        {"webhook-id": "msg_" + "b" * 24, "webhook-timestamp": "1", "webhook-signature": signature}
    )
    assert ("A" * 43 + "=").encode() in SIGNATURES
    assert not any(entry.startswith(b"msg_") for entry in SIGNATURES)


def test_a_test_whose_output_holds_a_signature_it_made_is_caught() -> None:
    from tests.support.secret_scan import captured_output_hits
    from tests.support.stack import signed_stripe

    header = signed_stripe(b"{}")["Stripe-Signature"]
    leaked = [("Captured log call", f"WARNING header {header}")]
    assert [hit.split()[0] for hit in captured_output_hits(leaked)] == ["signature"]
    assert captured_output_hits([("Captured stdout call", "body_sha256 " + "ab" * 32)]) == []
