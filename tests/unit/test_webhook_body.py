from __future__ import annotations

import pytest

from common.errors import BadRequest
from common.topology import FieldRef
from common.webhook_body import FORM, JSON, event_id, first_present, lookup, parse_body


def test_json_and_form_bodies() -> None:
    assert parse_body(b'{"a": 1}', JSON).document == {"a": 1}
    form = parse_body(b"To=%2B1555&ToCity=&To=dup", FORM)
    assert form.form == {"To": "+1555", "ToCity": ""}
    assert form.document is None


def test_form_payload_field_is_the_json_document() -> None:
    parsed = parse_body(b"payload=%7B%22trigger_id%22%3A%22t.1%22%7D", FORM)
    assert lookup(FieldRef(json_pointer="/trigger_id"), {}, parsed) == "t.1"


@pytest.mark.parametrize(
    ("body", "media"),
    [(b"{bad", JSON), (b"\xff\xfe", JSON), (b"payload=%7Bnope", FORM), (b"a=%ff", FORM)],
)
def test_unparseable_bodies_are_400(body: bytes, media: str) -> None:
    with pytest.raises(BadRequest):
        parse_body(body, media)


def test_first_present_and_qualifiers() -> None:
    parsed = parse_body(b"CallSid=CA1&CallStatus=ringing&MessageSid=", FORM)
    refs = [FieldRef(form_field="MessageSid"), FieldRef(form_field="CallSid")]
    qualifiers = [FieldRef(form_field="MessageStatus"), FieldRef(form_field="CallStatus")]
    assert first_present(refs, {}, parsed) == "CA1"
    assert event_id(refs, qualifiers, {}, parsed) == "CA1:ringing"


def test_headers_numbers_and_limits() -> None:
    parsed = parse_body(b'{"id": 42, "flag": true, "long": "' + b"x" * 300 + b'"}', JSON)
    assert lookup(FieldRef(json_pointer="/id"), {}, parsed) == "42"
    assert lookup(FieldRef(json_pointer="/flag"), {}, parsed) is None
    assert lookup(FieldRef(header="X-Id"), {"X-Id": "abc"}, parsed) == "abc"
    with pytest.raises(BadRequest, match="longer than"):
        lookup(FieldRef(json_pointer="/long"), {}, parsed)


def test_missing_id_lists_every_place_looked() -> None:
    parsed = parse_body(b"{}", JSON)
    refs = [FieldRef(json_pointer="/event_id"), FieldRef(form_field="trigger_id")]
    with pytest.raises(BadRequest) as info:
        event_id(refs, [], {}, parsed)
    assert "JSON field /event_id or form field trigger_id" in info.value.detail
    assert info.value.extensions["field"] == "JSON field /event_id"
