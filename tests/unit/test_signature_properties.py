"""Properties of every scheme, plus a cross-check against the `standardwebhooks` library.

Sign -> verify must round-trip for arbitrary bodies and secrets; any single-byte change of the
signed body and any single-character change of the signature must be rejected; a blank secret
must reject before anything else.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import product
from urllib.parse import urlencode

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from common.errors import SignatureInvalid
from common.signatures import (
    SCHEMES,
    HmacOptions,
    SignedRequest,
    body_hash_url,
    sign_headers,
    verifier_for,
)

SCHEME_NAMES = sorted(SCHEMES)
STANDARD_LIKE = ("standard-webhooks", "svix")
FIXED_SIGNATURE_HEADERS = {
    "standard-webhooks": "webhook-signature",
    "svix": "svix-signature",
    "stripe": "Stripe-Signature",
    "github": "X-Hub-Signature-256",
    "shopify": "X-Shopify-Hmac-Sha256",
    "slack": "X-Slack-Signature",
    "twilio": "X-Twilio-Signature",
}
TWILIO_URLS = (
    "https://hooks.example.com/webhooks/twilio",
    "https://hooks.example.com:8443/t?source=sms&x=",
    "http://127.0.0.1:8080/webhooks/twilio",
)
TOLERANCE = 300
PRINTABLE = [chr(code) for code in range(0x20, 0x7F)]
EXAMPLES = settings(max_examples=100, deadline=None)

text_secrets = st.text(min_size=1, max_size=64).filter(str.strip)
standard_secrets = st.builds(
    lambda key, prefixed: ("whsec_" if prefixed else "") + base64.b64encode(key).decode(),
    st.binary(min_size=1, max_size=64),
    st.booleans(),
)
hmac_options = st.builds(
    HmacOptions,
    header=st.sampled_from(["X-Signature", "x-hookyard-signature"]),
    algorithm=st.sampled_from(["sha256", "sha512"]),
    encoding=st.sampled_from(["hex", "base64"]),
    prefix=st.sampled_from(["", "sha256=", "v1="]),
    timestamp_header=st.sampled_from([None, "X-Timestamp"]),
)
blank_secrets = st.lists(st.text(alphabet=" \t\r\n\x0b\x0c\u00a0\u2003", max_size=4), max_size=3)
timestamps = st.integers(1_000_000_000, 4_000_000_000)
form_fields = st.lists(st.tuples(st.text(max_size=12), st.text(max_size=24)), max_size=12)


@dataclass(frozen=True)
class Sent:
    scheme: str
    secret: str
    body: bytes
    now: int
    url: str | None
    options: HmacOptions | None
    headers: dict[str, str]

    @property
    def signature_header(self) -> str:
        if self.options is not None:
            return self.options.header
        return FIXED_SIGNATURE_HEADERS[self.scheme]

    def verify(
        self,
        secrets: list[str] | None = None,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        skew: int = 0,
    ) -> None:
        request = SignedRequest(
            headers=list((self.headers if headers is None else headers).items()),
            body=self.body if body is None else body,
            url=self.url,
        )
        verifier = verifier_for(self.scheme, hmac=self.options)
        verifier.verify(request, [self.secret] if secrets is None else secrets, self.now + skew)


def secrets_for(scheme: str) -> st.SearchStrategy[str]:
    return standard_secrets if scheme in STANDARD_LIKE else text_secrets


@st.composite
def sent(draw: st.DrawFn, scheme: str, *, raw_body: bool = False) -> Sent:
    """A signed request; `raw_body` makes Twilio sign the bytes (JSON mode) instead of fields."""
    secret = draw(secrets_for(scheme))
    now = draw(timestamps)
    options = draw(hmac_options) if scheme == "hmac" else None
    url = None
    body = draw(st.binary(min_size=1, max_size=2048))
    if scheme == "twilio":
        url = draw(st.sampled_from(TWILIO_URLS))
        if raw_body or draw(st.booleans()):
            url = body_hash_url(url, body)
        else:
            body = urlencode(draw(form_fields)).encode()
    headers = sign_headers(scheme, body, secret, now=now, url=url, hmac=options)
    return Sent(scheme, secret, body, now, url, options, headers)


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
@EXAMPLES
@given(data=st.data())
def test_sign_then_verify_round_trips(scheme: str, data: st.DataObject) -> None:
    request = data.draw(sent(scheme))
    others = data.draw(st.lists(secrets_for(scheme), max_size=2))
    skew = data.draw(st.integers(-TOLERANCE, TOLERANCE))
    request.verify(skew=skew)
    request.verify([*others, request.secret], skew=skew)
    request.verify([request.secret, *others], skew=skew)


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
@EXAMPLES
@given(data=st.data())
def test_any_single_byte_change_of_the_body_is_rejected(scheme: str, data: st.DataObject) -> None:
    request = data.draw(sent(scheme, raw_body=True))
    index = data.draw(st.integers(0, len(request.body) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != request.body[index]))
    changed = request.body[:index] + bytes([byte]) + request.body[index + 1 :]
    with pytest.raises(SignatureInvalid):
        request.verify(body=changed)


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
@EXAMPLES
@given(data=st.data())
def test_any_single_character_change_of_the_signature_is_rejected(
    scheme: str, data: st.DataObject
) -> None:
    request = data.draw(sent(scheme))
    name = request.signature_header
    value = request.headers[name]
    index = data.draw(st.integers(0, len(value) - 1))
    char = data.draw(st.one_of(st.sampled_from(PRINTABLE), st.characters()))
    assume(char != value[index])
    headers = {**request.headers, name: value[:index] + char + value[index + 1 :]}
    with pytest.raises(SignatureInvalid):
        request.verify(headers=headers)


def _fixed(scheme: str, options: HmacOptions | None = None) -> Sent:
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode() if scheme in STANDARD_LIKE else "k"
    body, now, url = b'{"id":"evt_1"}', 1_700_000_000, TWILIO_URLS[1]
    headers = sign_headers(scheme, body, secret, now=now, url=url, hmac=options)
    return Sent(scheme, secret, body, now, url, options, headers)


FIXED_HMAC = [
    HmacOptions("X-Sig", "sha256", "hex", "v1="),
    HmacOptions("X-Sig", "sha256", "base64", "v1=", "X-Ts"),
    HmacOptions("X-Sig", "sha512", "hex", "v1=", "X-Ts"),
    HmacOptions("X-Sig", "sha512", "base64", "v1="),
]
FIXED = [
    *(pytest.param(_fixed(scheme), id=scheme) for scheme in SCHEME_NAMES if scheme != "hmac"),
    *(pytest.param(_fixed("hmac", o), id=f"hmac-{o.algorithm}-{o.encoding}") for o in FIXED_HMAC),
]


@pytest.mark.parametrize("request_", FIXED)
def test_every_printable_substitution_in_the_signature_is_rejected(request_: Sent) -> None:
    """Exhaustive over ASCII, so other spellings of the same digest (hex case, base64 unused
    bits, padding) are covered, which random draws almost never hit."""
    name = request_.signature_header
    value = request_.headers[name]
    accepted = []
    for index, char in product(range(len(value)), PRINTABLE):
        if char == value[index]:
            continue
        headers = {**request_.headers, name: value[:index] + char + value[index + 1 :]}
        try:
            request_.verify(headers=headers)
        except SignatureInvalid:
            continue
        accepted.append((index, char))
    assert not accepted


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
@EXAMPLES
@given(data=st.data())
def test_blank_secrets_mean_not_configured(scheme: str, data: st.DataObject) -> None:
    request = data.draw(sent(scheme))
    with pytest.raises(SignatureInvalid, match=r"^no secret configured$"):
        request.verify(data.draw(blank_secrets))


@pytest.mark.parametrize("scheme", STANDARD_LIKE)
@pytest.mark.parametrize("secret", ["whsec_\x80", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\u2026"])
def test_a_key_that_is_not_ascii_base64_is_an_invalid_secret(scheme: str, secret: str) -> None:
    """A key pasted with a non-ASCII character: a refusal that says so, not a crash."""
    request = SignedRequest(headers=[], body=b"{}")
    with pytest.raises(SignatureInvalid, match=r"^invalid secret configured$"):
        verifier_for(scheme).verify(request, [secret], int(time.time()))


@EXAMPLES
@given(
    names=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=8, unique=True),
    values=st.data(),
    secret=text_secrets,
)
def test_twilio_any_changed_field_value_is_rejected(
    names: list[str], values: st.DataObject, secret: str
) -> None:
    """Twilio signs decoded fields: bytes may change harmlessly (`%2b`/`%2B`), values may not."""
    fields = [(name, values.draw(st.text(min_size=1, max_size=16))) for name in names]
    url = TWILIO_URLS[0]
    body = urlencode(fields).encode()
    request = Sent(
        "twilio", secret, body, 0, url, None, sign_headers("twilio", body, secret, now=0, url=url)
    )
    index = values.draw(st.integers(0, len(fields) - 1))
    name, value = fields[index]
    position = values.draw(st.integers(0, len(value) - 1))
    char = values.draw(st.characters().filter(lambda c: c != value[position]))
    fields[index] = (name, value[:position] + char + value[position + 1 :])
    with pytest.raises(SignatureInvalid):
        request.verify(body=urlencode(fields).encode())


message_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=40)


@pytest.mark.parametrize("scheme", STANDARD_LIKE)
@EXAMPLES
@given(key=st.binary(min_size=1, max_size=64), msg_id=message_ids, payload=st.text(max_size=512))
def test_reference_library_verifies_our_signature(
    scheme: str, key: bytes, msg_id: str, payload: str
) -> None:
    secret = "whsec_" + base64.b64encode(key).decode()
    body = payload.encode()
    headers = sign_headers(scheme, body, secret, now=int(time.time()), event_id=msg_id)
    unbranded = {name.replace("svix-", "webhook-"): value for name, value in headers.items()}
    Webhook(secret).verify(body, unbranded, json_parse=False)


@pytest.mark.parametrize("scheme", STANDARD_LIKE)
@EXAMPLES
@given(
    key=st.binary(min_size=1, max_size=64),
    msg_id=message_ids,
    payload=st.text(max_size=512),
    now=timestamps,
)
def test_we_verify_the_reference_library_signature(
    scheme: str, key: bytes, msg_id: str, payload: str, now: int
) -> None:
    secret = "whsec_" + base64.b64encode(key).decode()
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(now, tz=UTC), payload)
    headers = [("webhook-id", msg_id), ("webhook-timestamp", str(now))]
    request = SignedRequest(
        headers=[*headers, ("webhook-signature", signature)], body=payload.encode()
    )
    verifier_for(scheme).verify(request, [secret], now)


@pytest.mark.parametrize("request_", FIXED)
def test_dropping_any_signed_header_is_rejected(request_: Sent) -> None:
    request_.verify()
    for name in request_.headers.keys() - {"Content-Type"}:
        headers = {key: value for key, value in request_.headers.items() if key != name}
        with pytest.raises(SignatureInvalid, match=r"^missing \w+ header$"):
            request_.verify(headers=headers)
