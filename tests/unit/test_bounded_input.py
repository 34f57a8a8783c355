"""The pure checks that keep untrusted input from reaching the parser's recursion limit or
PostgreSQL with values it cannot store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import bounded_json
from common.storable import (
    BIGINT_MAX,
    attributes_problem,
    bigint_problem,
    datetime_problem,
    json_problem,
    parse_bounded_int,
    scrub,
    text_problem,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=20,
)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_depth_is_measured_without_parsing() -> None:
    assert bounded_json.nesting_depth(b'{"a": [1, {"b": []}]}') == 4
    assert bounded_json.nesting_depth(b'"[[[[[["') == 0
    assert bounded_json.nesting_depth(b'["\\"[[[[", {}]') == 2
    assert bounded_json.nesting_depth(b"42") == 0


def test_deep_documents_are_refused_before_the_parser_recurses() -> None:
    assert bounded_json.loads(nested(bounded_json.MAX_DEPTH)) == json.loads(
        nested(bounded_json.MAX_DEPTH)
    )
    with pytest.raises(bounded_json.JsonTooDeep):
        bounded_json.loads(nested(bounded_json.MAX_DEPTH + 1))
    # Deep enough that json.loads itself raises RecursionError: still a plain ValueError.
    with pytest.raises(ValueError, match="deeper"):
        bounded_json.loads(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"])
def test_only_utf8_json_is_parsed(encoding: str) -> None:
    """json.loads would decode these too, and a NUL or a lone surrogate would pass every check
    written for UTF-8 bytes: a signed sender's UTF-16 body was accepted with both."""
    assert bounded_json.loads(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}  # a UTF-8 BOM is fine
    for document in ('["\\u0000"]', '["a\x00"]', '{"k": "\ud800"}', '{"id": "evt_1"}'):
        with pytest.raises(ValueError, match="UTF-8"):
            bounded_json.loads(document.encode(encoding, "surrogatepass"))


def test_brackets_inside_strings_do_not_count() -> None:
    body = json.dumps({"text": "[" * 10_000}).encode()
    assert bounded_json.loads(body) == {"text": "[" * 10_000}


@settings(max_examples=200)
@given(json_values)
def test_depth_agrees_with_the_document(value: object) -> None:
    raw = json.dumps(value).encode()

    def depth(node: object) -> int:
        if isinstance(node, list):
            return 1 + max((depth(v) for v in node), default=0)
        if isinstance(node, dict):
            return 1 + max((depth(v) for v in node.values()), default=0)
        return 0

    assert bounded_json.nesting_depth(raw) == depth(value)
    assert bounded_json.loads(raw) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [("ok", None), ("é ✓ 😀", None), ("a\x00b", "NUL"), ("acct_\ud800", "surrogate")],
)
def test_text_problems(value: str, reason: str | None) -> None:
    problem = text_problem(value)
    assert (problem is None) if reason is None else (reason in (problem or ""))


def test_json_problem_names_the_pointer_and_skips_clean_bodies() -> None:
    raw = b'{"data": {"object": {"metadata": {"account_id": "acct_\\ud800"}}}}'
    assert json_problem(raw, json.loads(raw)) == (
        "/data/object/metadata/account_id",
        "is not valid Unicode (a lone surrogate)",
    )
    nul_key = b'{"a/b": {"k\\u0000": 1}}'
    pointer, reason = json_problem(nul_key, json.loads(nul_key)) or ("", "")
    assert pointer == "/a~1b/k\ufffd"
    assert "NUL" in reason
    paired = b'{"emoji": "\\ud83d\\ude00"}'
    assert json_problem(paired, json.loads(paired)) is None
    # Raw UTF-8-encoded surrogates decode (json uses surrogatepass) and are caught too.
    raw_bytes = b'["\xed\xa0\x80"]'
    assert json_problem(raw_bytes, json.loads(raw_bytes)) == ("/0", text_problem("\ud800"))


def test_datetimes_that_an_offset_pushes_out_of_range() -> None:
    assert datetime_problem(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) is not None
    assert datetime_problem(datetime(9999, 12, 31, 23, 59, tzinfo=timezone(-timedelta(hours=1))))
    assert datetime_problem(datetime(2026, 1, 1)) == "has no UTC offset"
    assert datetime_problem(datetime(2026, 1, 1, tzinfo=UTC)) is None


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("0", 0),
        ("42", 42),
        (str(BIGINT_MAX), BIGINT_MAX),
        (str(BIGINT_MAX + 1), None),
        ("9" * 4301, None),
        ("", None),
        ("-1", None),
        ("³", None),
        ("١٢", None),
        ("1e3", None),
    ],
)
def test_bounded_ints(raw: str, value: int | None) -> None:
    assert parse_bounded_int(raw) == value


def test_bigint_and_attribute_checks() -> None:
    assert bigint_problem(2**63) is not None
    assert bigint_problem(-(2**63)) is None
    assert attributes_problem({"ok": "yes", "bad": "x\x00"}) == (
        "bad",
        "attribute contains a NUL character",
    )
    key, reason = attributes_problem({"k\ud800": "v"}) or ("", "")
    assert reason.startswith("attribute name")
    assert text_problem(key) is None


def test_scrub_makes_any_text_storable() -> None:
    assert scrub("fine") == "fine"
    for dirty in ("a\x00", "b\ud800c", "\udfff"):
        assert text_problem(scrub(dirty)) is None
