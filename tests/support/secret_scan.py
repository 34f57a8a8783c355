"""Secrets, tokens and signatures must never reach what the stack writes or answers.

One search, shared by the chaos run, the `hookyard dev` processes the tests start (their
logs) and every test's captured output (the in-process stacks log there). It looks for the
configured secrets, the stack's own generated keys, every signature the tests' signing
made, and any bearer token at all. A hit is reported by kind and a short prefix only, so
the report does not leak what it found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.support.stack import TEST_SECRETS

JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
TOKENISH = re.compile(rb"[A-Za-z0-9+/_-]{20,}={0,2}")
"""Runs of base64 or hex long enough to be a signature: the candidates looked up."""
_SIGNATURE_PART = re.compile(r"[A-Za-z0-9+/_-]{20,}={0,2}")
MIN_SECRET_CHARS = 8
"""Shorter configured values (the Twilio test token is `12345`) would match by chance."""

SIGNATURES: set[bytes] = set()
"""Every signature made in this process by `record_signatures`' callers."""


def record_signatures(headers: dict[str, str]) -> dict[str, str]:
    """Remembers the signatures in signed request headers (`t=1,v1=<hex>`, `v1,<base64>`,
    `sha256=<hex>`) so that a later search can recognise them; ids and timestamps are not
    secret and stay out."""
    for name, value in headers.items():
        if "signature" in name.lower() or "hmac" in name.lower():
            SIGNATURES.update(part.encode() for part in _SIGNATURE_PART.findall(value))
    return headers


def configured_secrets() -> list[str]:
    return [value for value in TEST_SECRETS.values() if len(value) >= MIN_SECRET_CHARS]


def stack_secrets(data_dir: Path) -> list[str]:
    """Lines of the secrets a stack generated for itself (its token-signing key above all)."""
    found = []
    for path in sorted((data_dir / "secrets").glob("*")):
        if path.is_file() and not path.name.endswith("-cert.pem"):  # a certificate is public
            found += [line.strip() for line in path.read_text(errors="replace").splitlines()]
    return [line for line in found if len(line) >= 16 and not line.startswith("-----")]


def find_secrets(
    text: bytes, secrets: Iterable[str], signatures: Iterable[bytes] = ()
) -> list[str]:
    hits = [
        f"secret {value[:4]}…"
        for value in secrets
        if len(value) >= MIN_SECRET_CHARS and value.encode() in text
    ]
    sent = signatures if isinstance(signatures, set | frozenset) else set(signatures)
    candidates = set(TOKENISH.findall(text))
    hits += [f"signature {sig[:8].decode()}…" for sig in sorted(candidates & sent)]
    hits += [f"token {token[:12].decode()}…" for token in JWT.findall(text)[:5]]
    return hits


def assert_log_clean(log_path: Path, data_dir: Path | None = None) -> None:
    """For a `hookyard dev` the tests ran: its whole log, once it has stopped."""
    secrets = configured_secrets() + (stack_secrets(data_dir) if data_dir else [])
    hits = find_secrets(log_path.read_bytes(), secrets, SIGNATURES)
    assert hits == [], f"{log_path.name} holds secrets: {', '.join(hits)}"


def watch_signing() -> None:
    """Makes every `sign_headers` call in this process record its signatures. Called once,
    before test modules import it (they bind the name at import)."""
    from common import signatures
    from common.signatures import signing

    original = signing.sign_headers
    if getattr(original, "watched", False):
        return

    def recording(*args: Any, **kwargs: Any) -> dict[str, str]:
        return record_signatures(original(*args, **kwargs))

    recording.watched = True  # type: ignore[attr-defined]
    signing.sign_headers = recording
    signatures.sign_headers = recording


def captured_output_hits(sections: Iterable[tuple[str, str]]) -> list[str]:
    """A test's captured stdout, stderr and log records (pytest's report sections)."""
    text = "\n".join(content for _, content in sections).encode(errors="replace")
    return find_secrets(text, configured_secrets(), SIGNATURES)


RESPONSE_HITS: list[str] = []
"""Leaks found in responses since the current test began (the conftest hook drains it)."""


def watch_responses() -> None:
    """Searches every response an httpx client in this process reads (every test's calls
    to a stack go through one) for the same secrets."""
    import httpx

    original = httpx.Client.send
    if getattr(original, "watched", False):
        return

    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        response = original(self, request, **kwargs)
        if not kwargs.get("stream"):
            found = find_secrets(response.content, configured_secrets(), SIGNATURES)
            RESPONSE_HITS.extend(f"{hit} in the response to {request.url.path}" for hit in found)
        return response

    send.watched = True  # type: ignore[attr-defined]
    httpx.Client.send = send  # type: ignore[method-assign]
