"""Cost of one successful verification per scheme (2 KiB body, one secret): figures, no verdict.

Run with `python -m tests.load.bench_signatures` (also part of `make bench`).
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from common.signatures import (
    SCHEMES,
    HmacOptions,
    SignedRequest,
    body_hash_url,
    sign_headers,
    verifier_for,
)

ITERATIONS = 2000
BODY_BYTES = 2048
NOW = 1_700_000_000
SECRET = "whsec_aG9va3lhcmQtc3RhbmRhcmQtd2ViaG9va3Mta2V5LTE="
URL = "https://hooks.example.com/webhooks/twilio?source=sms"
HMAC = HmacOptions(header="X-Signature", prefix="sha256=", timestamp_header="X-Timestamp")
EXTRA_HEADERS = [
    ("Host", "hooks.example.com"),
    ("User-Agent", "bench/1.0"),
    ("Accept", "*/*"),
    ("Content-Length", str(BODY_BYTES)),
    ("X-Forwarded-For", "203.0.113.7"),
    ("X-Cloud-Trace-Context", "105445aa7843bc8bf206b12000100000/1;o=1"),
]


def _json_body() -> bytes:
    filler = "x" * BODY_BYTES
    head = b'{"id":"evt_1","data":"'
    return head + filler[: BODY_BYTES - len(head) - 2].encode() + b'"}'


def _form_body() -> bytes:
    fields = [(f"Field{i:02d}", "v" * 90) for i in range(20)]
    return urlencode(fields).encode()[:BODY_BYTES].rsplit(b"&", 1)[0]


def _case(scheme: str) -> list[tuple[str, SignedRequest]]:
    """Twilio twice: form bodies are parsed and sorted, JSON bodies are hashed."""
    options = HMAC if scheme == "hmac" else None
    if scheme != "twilio":
        body = _json_body()
        headers = sign_headers(scheme, body, SECRET, now=NOW, event_id="msg_1", hmac=options)
        request = SignedRequest([*EXTRA_HEADERS, *headers.items()], body)
        return [(scheme, request)]
    cases = []
    for label, body, url in (
        ("twilio-form", _form_body(), URL),
        ("twilio-json", _json_body(), body_hash_url(URL, _json_body())),
    ):
        headers = sign_headers(scheme, body, SECRET, now=NOW, url=url)
        cases.append((label, SignedRequest([*EXTRA_HEADERS, *headers.items()], body, url=url)))
    return cases


def main() -> None:
    print(f"{'scheme':<18} {'µs/verify':>10}   ({ITERATIONS} iterations, {BODY_BYTES} B body)")
    for scheme in sorted(SCHEMES):
        verifier = verifier_for(scheme, hmac=HMAC if scheme == "hmac" else None)
        for label, request in _case(scheme):
            secrets = [SECRET]
            for _ in range(100):
                verifier.verify(request, secrets, NOW)
            start = time.perf_counter()
            for _ in range(ITERATIONS):
                verifier.verify(request, secrets, NOW)
            elapsed = time.perf_counter() - start
            print(f"{label:<18} {elapsed / ITERATIONS * 1e6:>10.2f}")


if __name__ == "__main__":
    main()
