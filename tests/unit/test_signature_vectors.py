"""Every case of the signature vectors, plus the providers' own published answers.

The vectors are a copy kept in the repository (`tests/data/`), so a clone alone runs every case.
A missing or empty file is a collection error, never fewer cases: a broken checkout cannot look
green.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from common.errors import SignatureInvalid
from common.secrets import split_values
from common.signatures import SCHEMES, HmacOptions, SignedRequest, sign_headers, verifier_for

VECTORS = Path(__file__).resolve().parents[1] / "data/signature-vectors.json"

SIGNATURE_HEADERS = {
    "standard-webhooks": {"webhook-signature"},
    "svix": {"svix-signature", "webhook-signature"},
    "stripe": {"stripe-signature"},
    "github": {"x-hub-signature-256"},
    "shopify": {"x-shopify-hmac-sha256"},
    "slack": {"x-slack-signature"},
    "twilio": {"x-twilio-signature"},
    "hmac": {"x-hookyard-signature", "x-signature"},
}


def _load() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(VECTORS.read_text(encoding="utf-8"))
    if not cases:
        raise RuntimeError(f"no signature vectors in {VECTORS}")
    return cases


CASES = _load()


def _params() -> list[Any]:
    return [pytest.param(case, id=case["id"]) for case in CASES]


def _options(config: dict[str, Any]) -> tuple[int, HmacOptions | None]:
    if not config:
        return 300, None
    assert set(config) == {
        "header",
        "algorithm",
        "encoding",
        "prefix",
        "timestamp_header",
        "tolerance_s",
        "signed_payload",
    }
    timed = config["timestamp_header"] is not None
    assert config["signed_payload"] == ("{timestamp}.{body}" if timed else "{body}")
    options = HmacOptions(
        header=config["header"],
        algorithm=config["algorithm"],
        encoding=config["encoding"],
        prefix=config["prefix"],
        timestamp_header=config["timestamp_header"],
    )
    return config["tolerance_s"], options


def _verify(case: dict[str, Any], headers: list[tuple[str, str]] | None = None) -> None:
    tolerance_s, options = _options(case["config"])
    verifier = verifier_for(case["scheme"], tolerance_s=tolerance_s, hmac=options)
    request = SignedRequest(
        headers=headers if headers is not None else list(case["headers"].items()),
        body=case["body"].encode("utf-8"),
        url=case["url"],
    )
    verifier.verify(request, case["secrets"], case["now"])


def _leaks(detail: str, case: dict[str, Any]) -> list[str]:
    sensitive = [*case["secrets"], *case["headers"].values()]
    return [value for value in sensitive if len(value) >= 8 and value in detail]


@pytest.mark.parametrize("case", _params())
def test_vector(case: dict[str, Any]) -> None:
    if case["expect"] == "valid":
        _verify(case)
        return
    assert case["expect"] == "invalid"
    with pytest.raises(SignatureInvalid) as info:
        _verify(case)
    assert info.value.detail
    assert not _leaks(info.value.detail, case)


@pytest.mark.parametrize("case", _params())
def test_vector_secret_splits_like_the_secret_store(case: dict[str, Any]) -> None:
    assert list(split_values(case["secret"])) == case["secrets"]


@pytest.mark.parametrize("case", [p for p in _params() if p.values[0]["expect"] == "valid"])
def test_duplicated_signature_header_is_rejected(case: dict[str, Any]) -> None:
    headers = list(case["headers"].items())
    wanted = SIGNATURE_HEADERS[case["scheme"]]
    name, value = next((n, v) for n, v in headers if n.lower() in wanted)
    with pytest.raises(SignatureInvalid, match=f"^duplicate {name.lower()} header$"):
        _verify(case, [*headers, (name, value)])


def test_vectors_cover_every_scheme() -> None:
    ids = [case["id"] for case in CASES]
    assert len(ids) == len(set(ids))
    for scheme in SCHEMES:
        verdicts = {case["expect"] for case in CASES if case["scheme"] == scheme}
        assert verdicts == {"valid", "invalid"}, scheme
    assert {case["scheme"] for case in CASES} <= set(SCHEMES)


TWILIO_DOC_PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+14158675310"),
    ("Digits", "1234"),
    ("From", "+14158675310"),
    ("To", "+18005551212"),
]
SLACK_DOC_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)

# (scheme, secret, body, now, event_id, url, header, published value)
KNOWN_ANSWERS = [
    pytest.param(
        "github",
        "It's a Secret to Everybody",
        b"Hello, World!",
        0,
        None,
        None,
        "X-Hub-Signature-256",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        id="github-docs",
    ),
    pytest.param(
        "standard-webhooks",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        b'{"test": 2432232314}',
        1614265330,
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        None,
        "webhook-signature",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        id="standard-webhooks-libraries",
    ),
    pytest.param(
        "slack",
        "8f742231b10e8888abcd99yyyzzz85a5",
        SLACK_DOC_BODY.encode(),
        1531420618,
        None,
        None,
        "X-Slack-Signature",
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        id="slack-docs",
    ),
    pytest.param(
        "twilio",
        "12345",
        urlencode(TWILIO_DOC_PARAMS).encode(),
        0,
        None,
        "https://example.com/myapp.php?foo=1&bar=2",
        "X-Twilio-Signature",
        "L/OH5YylLD5NRKLltdqwSvS0BnU=",
        id="twilio-docs",
    ),
    pytest.param(
        "twilio",
        "12345",
        b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234",
        0,
        None,
        "https://mycompany.com/myapp.php?foo=1&bar=2",
        "X-Twilio-Signature",
        "IK+Dwps556ElfBT0I3Rgjkr1wJU=",
        id="twilio-python-repeated-parameter",
    ),
]


@pytest.mark.parametrize(
    ("scheme", "secret", "body", "now", "event_id", "url", "header", "expected"), KNOWN_ANSWERS
)
def test_published_known_answers(
    scheme: str,
    secret: str,
    body: bytes,
    now: int,
    event_id: str | None,
    url: str | None,
    header: str,
    expected: str,
) -> None:
    headers = sign_headers(scheme, body, secret, now=now, event_id=event_id, url=url)
    assert headers[header] == expected
    request = SignedRequest(headers=list(headers.items()), body=body, url=url)
    verifier_for(scheme).verify(request, [secret], now)
