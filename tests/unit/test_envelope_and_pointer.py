from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from common.envelope import build_envelope, format_time, parse_envelope
from common.errors import BadRequest
from common.json_pointer import resolve


def test_build_then_parse_roundtrip() -> None:
    body = build_envelope(
        project="p",
        subscription="ledger",
        message_id="42",
        data=b"\x00hello",
        attributes={"source": "stripe"},
        publish_time=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        delivery_attempt=3,
    )
    assert body["message"]["publishTime"] == "2026-01-02T03:04:05.678Z"
    assert body["message"]["message_id"] == body["message"]["messageId"] == "42"
    assert "orderingKey" not in body["message"]
    env = parse_envelope(json.dumps(body).encode())
    assert env.message.data == b"\x00hello"
    assert env.short_subscription == "ledger"
    assert env.delivery_attempt == 3
    assert env.message.attributes == {"source": "stripe"}


def test_attributes_omitted_when_empty() -> None:
    body = build_envelope(
        project="p", subscription="s", message_id="1", data=b"x", attributes={},
        publish_time=datetime.now(UTC),
    )  # fmt: skip
    assert "attributes" not in body["message"]
    assert "deliveryAttempt" not in body


@pytest.mark.parametrize(
    "raw",
    [
        b"nope",
        b"{}",
        b'{"message": {}}',
        json.dumps({"message": {"messageId": "1", "data": "!!"}}).encode(),
        json.dumps({"message": {"messageId": "1", "data": "\x80"}}).encode(),
        json.dumps({"message": {"messageId": "1", "attributes": {"a": 1}}}).encode(),
    ],
)
def test_bad_envelopes_are_400(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_envelope(raw)


def test_format_time_normalises_to_utc() -> None:
    assert format_time(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000Z"
    assert base64.b64decode(base64.b64encode(b"x")) == b"x"


def test_json_pointer() -> None:
    doc = {"a": {"b/c": [10, {"~d": "x"}]}}
    assert resolve(doc, "/a/b~1c/1/~0d") == "x"
    assert resolve(doc, "/a/b~1c/0") == 10
    assert resolve(doc, "/a/missing") is None
    assert resolve(doc, "/a/b~1c/9") is None
    assert resolve([1], "/x") is None


def test_pointer_indexes_are_ascii_digits_only() -> None:
    assert resolve([1, 2, 3, 4], "/³") is None
