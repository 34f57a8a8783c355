"""The subscription filter subset: what it accepts, what it refuses, and how it decides.

Filters are generated as text together with a reference predicate, so the properties check
the parser and the evaluator as one, against plain Python boolean logic.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.pubsub_filter import (
    MAX_FILTER_BYTES,
    And,
    Equals,
    HasKey,
    HasPrefix,
    Not,
    Or,
    parse_filter,
)
from common.topology import load_topology

EXAMPLES = settings(max_examples=300, deadline=None)


@pytest.mark.parametrize(
    ("text", "root"),
    [
        ("attributes:a", HasKey("a")),
        ('attributes.a = "x"', Equals("a", "x")),
        ('attributes.a != "x"', Not(Equals("a", "x"))),
        ('hasPrefix(attributes.a, "x")', HasPrefix("a", "x")),
        ('attributes:"iana.org/language_tag"', HasKey("iana.org/language_tag")),
        ('attributes."a b" = ""', Equals("a b", "")),
        ("attributes:my-key_2", HasKey("my-key_2")),
        ("attributes:AND", HasKey("AND")),
        (
            "attributes:a AND attributes:b AND attributes:c",
            And((HasKey("a"), HasKey("b"), HasKey("c"))),
        ),
        ("attributes:a OR attributes:b", Or((HasKey("a"), HasKey("b")))),
        ("NOT attributes:a AND attributes:b", And((Not(HasKey("a")), HasKey("b")))),
        ("NOT (attributes:a OR attributes:b)", Not(Or((HasKey("a"), HasKey("b"))))),
        ("NOT(attributes:a)", Not(HasKey("a"))),
        (
            "attributes:a AND (attributes:b OR attributes:c)",
            And((HasKey("a"), Or((HasKey("b"), HasKey("c"))))),
        ),
        ("((attributes:a))", HasKey("a")),
        ('  attributes . a="x"  ', Equals("a", "x")),
    ],
)  # fmt: skip
def test_parses_to_the_expected_tree(text: str, root: object) -> None:
    assert parse_filter(text).root == root


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        (r'"a\"b"', 'a"b'),
        (r'"back\\slash"', "back\\slash"),
        (r'"\n\t\r\a\b\f\v"', "\n\t\r\a\b\f\v"),
        (r'"\'\`\?"', "'`?"),
        (r'"\x41\101"', "AA"),
        (r'"\u00e9\U0001F600"', "é\U0001f600"),
        ('"é and ü"', "é and ü"),
        ('""', ""),
    ],
)
def test_string_escapes(literal: str, value: str) -> None:
    assert parse_filter(f"attributes.k = {literal}").root == Equals("k", value)
    assert parse_filter(f"attributes:{literal}").root == HasKey(value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(attributes:a", "never closed"),
        ("((attributes:a)", "never closed"),
        ("attributes:a)", "unbalanced parentheses"),
        ("()", "expected attributes"),
        ("attributes:a AND attributes:b OR attributes:c", "needs parentheses"),
        ("attributes:a OR attributes:b AND attributes:c", "needs parentheses"),
        ('attributes.a = "x', "unterminated string"),
        ('attributes.a = "x\\', "unterminated string"),
        ('attributes.a = "x\ny"', "line break"),
        ('hasSuffix(attributes.a, "x")', "unknown function 'hasSuffix'"),
        ('HasPrefix(attributes.a, "x")', "unknown function"),
        ('hasPrefix(attributes:a, "x")', "hasPrefix takes attributes.KEY"),
        ('hasPrefix(attributes.a, "x"', "close hasPrefix"),
        ("attributes.source = ", "expected a string value"),
        ("attributes.a = x", "expected a string value"),
        ("attributes.a == \"x\"", "expected a string value"),
        ("attributes.a = 'x'", "double quotes"),
        ('attributes:a = "x"', "only tests presence"),
        ("attributes:a and attributes:b", "uppercase"),
        ("not attributes:a", "expected attributes"),
        ("attributes:a attributes:b", "join restrictions"),
        ("NOT NOT attributes:a", "NOT NOT"),
        ("-attributes:a", "write NOT"),
        ("attributes:-a", "write NOT"),
        ("attributes", "expected '.' or ':'"),
        ("attributes.", "expected an attribute key"),
        ("data = \"x\"", "expected attributes"),
        ('attributes.a = "\\q"', "unknown escape"),
        ('attributes.a = "\\x4"', "two hex digits"),
        ('attributes.a = "\\xff"', "ASCII"),
        ('attributes.a = "\\400"', "ASCII"),
        ('attributes.a = "\\12"', "three octal digits"),
        ('attributes.a = "\\ud800"', "not a Unicode scalar value"),
        ('attributes.a = "\\U00110000"', "not a Unicode scalar value"),
        ("attributes:a AND", "found end of filter"),
        ("attributes:a & attributes:b", "unexpected character '&'"),
        ("   ", "only whitespace"),
        ("attributes:\ud800", "not valid Unicode"),
    ],
)  # fmt: skip
def test_syntax_errors_are_explained(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_filter(text)


def test_size_limit_is_256_bytes_of_utf8() -> None:
    prefix = 'attributes.k = "'
    fits = prefix + "x" * (MAX_FILTER_BYTES - len(prefix) - 1) + '"'
    assert len(fits.encode()) == MAX_FILTER_BYTES
    assert parse_filter(fits).matches({"k": "x" * (MAX_FILTER_BYTES - len(prefix) - 1)})
    with pytest.raises(ValueError, match="257 bytes"):
        parse_filter(fits[:-1] + 'x"')
    # Bytes, not characters: 120 two-byte letters push a short-looking filter over the limit.
    with pytest.raises(ValueError, match="bytes"):
        parse_filter(prefix + "é" * 120 + '"')


def test_empty_filter_matches_everything() -> None:
    empty = parse_filter("")
    assert empty.root is None
    assert empty.matches({})
    assert empty.matches({"source": "anything"})


@pytest.mark.parametrize(
    ("text", "attributes", "expected"),
    [
        ('attributes.source = "stripe"', {"source": "stripe"}, True),
        ('attributes.source = "stripe"', {"source": "Stripe"}, False),
        ('attributes.source = "stripe"', {}, False),
        ('attributes.source = ""', {"source": ""}, True),
        ('attributes.source != "stripe"', {"source": "github"}, True),
        ('attributes.source != "stripe"', {"source": "stripe"}, False),
        ('attributes.source != "stripe"', {}, True),
        ("attributes:source", {"source": ""}, True),
        ("attributes:source", {"Source": "x"}, False),
        ("NOT attributes:source", {}, True),
        ('hasPrefix(attributes.t, "invoice.")', {"t": "invoice.paid"}, True),
        ('hasPrefix(attributes.t, "invoice.")', {"t": "invoice"}, False),
        ('hasPrefix(attributes.t, "invoice.")', {}, False),
        ('hasPrefix(attributes.t, "")', {"t": "x"}, True),
        ('hasPrefix(attributes.t, "")', {}, False),
        ('NOT hasPrefix(attributes.t, "a")', {}, True),
        ('attributes:a AND NOT attributes.a = "x"', {"a": "y"}, True),
        ('attributes:a AND NOT attributes.a = "x"', {"a": "x"}, False),
        ('attributes:a AND NOT attributes.a = "x"', {}, False),
    ],
)  # fmt: skip
def test_matching(text: str, attributes: dict[str, str], expected: bool) -> None:
    assert parse_filter(text).matches(attributes) is expected


def test_not_equals_is_exactly_not_equals() -> None:
    for attributes in ({}, {"k": "v"}, {"k": "w"}, {"other": "v"}):
        negated = parse_filter('NOT attributes.k = "v"').matches(attributes)
        assert parse_filter('attributes.k != "v"').matches(attributes) is negated


def test_shipped_ledger_filter_takes_only_stripe() -> None:
    ledger = load_topology().subscription("ledger")
    assert ledger is not None
    ledger_filter = parse_filter(ledger.filter)
    assert ledger_filter.matches({"source": "stripe", "event_id": "evt_1"})
    assert not ledger_filter.matches({"source": "standard", "event_id": "msg_1"})
    assert not ledger_filter.matches({"event_id": "evt_1"})


# Generated filters: text plus the predicate it must mean.

KEYS = ["a", "b-c", "d_1", "x y", 'q"t', "é"]
VALUES = ["", "v", "va", "w", 'q"\\', "é\n"]
Attributes = Mapping[str, str]


@dataclass(frozen=True)
class Case:
    text: str
    expected: Callable[[Attributes], bool]


def quote(value: str) -> str:
    escaped = []
    for char in value:
        if char in '"\\':
            escaped.append("\\" + char)
        elif char == "\n":
            escaped.append("\\n")
        elif char == "\r":
            escaped.append("\\r")
        elif ord(char) > 0xFFFF:
            escaped.append(f"\\U{ord(char):08x}")
        elif not char.isascii():
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def key_text(key: str) -> str:
    bare = all(c.isascii() and (c.isalnum() or c in "_-") for c in key) and key[0] != "-"
    return key if bare else quote(key)


def _has(key: str) -> Case:
    return Case(f"attributes:{key_text(key)}", lambda attrs: key in attrs)


def _eq(key: str, value: str) -> Case:
    return Case(
        f"attributes.{key_text(key)} = {quote(value)}", lambda attrs: attrs.get(key) == value
    )


def _ne(key: str, value: str) -> Case:
    return Case(
        f"attributes.{key_text(key)} != {quote(value)}", lambda attrs: attrs.get(key) != value
    )


def _prefix(key: str, value: str) -> Case:
    return Case(
        f"hasPrefix(attributes.{key_text(key)}, {quote(value)})",
        lambda attrs: key in attrs and attrs[key].startswith(value),
    )


def _not(case: Case) -> Case:
    return Case(f"NOT ({case.text})", lambda attrs: not case.expected(attrs))


def _join(operator: str, cases: list[Case]) -> Case:
    text = f" {operator} ".join(f"({case.text})" for case in cases)
    if operator == "AND":
        return Case(text, lambda attrs: all(case.expected(attrs) for case in cases))
    return Case(text, lambda attrs: any(case.expected(attrs) for case in cases))


keys = st.sampled_from(KEYS)
values = st.sampled_from(VALUES)
restrictions = st.one_of(
    st.builds(_has, keys),
    st.builds(_eq, keys, values),
    st.builds(_ne, keys, values),
    st.builds(_prefix, keys, values),
)
filters = st.recursive(
    restrictions,
    lambda inner: st.one_of(
        st.builds(_not, inner),
        st.builds(_join, st.sampled_from(["AND", "OR"]), st.lists(inner, min_size=2, max_size=3)),
    ),
    max_leaves=6,
).filter(lambda case: len(case.text.encode()) <= MAX_FILTER_BYTES // 2 - 20)
attribute_maps = st.dictionaries(keys, values, max_size=len(KEYS))


@EXAMPLES
@given(filters, attribute_maps)
def test_generated_filters_mean_what_they_say(case: Case, attributes: dict[str, str]) -> None:
    assert parse_filter(case.text).matches(attributes) is case.expected(attributes)


@EXAMPLES
@given(filters, attribute_maps)
def test_not_matches_exactly_when_the_filter_does_not(
    case: Case, attributes: dict[str, str]
) -> None:
    plain = parse_filter(case.text).matches(attributes)
    assert parse_filter(f"NOT ({case.text})").matches(attributes) is not plain


@EXAMPLES
@given(filters, filters, attribute_maps)
def test_and_of_two_filters_is_both(left: Case, right: Case, attributes: dict[str, str]) -> None:
    both = parse_filter(f"({left.text}) AND ({right.text})").matches(attributes)
    each = parse_filter(left.text).matches(attributes), parse_filter(right.text).matches(attributes)
    assert both is all(each)
    either = parse_filter(f"({left.text}) OR ({right.text})").matches(attributes)
    assert either is any(each)


@EXAMPLES
@given(st.text(max_size=40))
def test_any_string_literal_round_trips(value: str) -> None:
    assert parse_filter(f"attributes.k = {quote(value)}").root == Equals("k", value)


@EXAMPLES
@given(st.text(max_size=60))
def test_arbitrary_text_parses_or_raises_value_error(text: str) -> None:
    try:
        parsed = parse_filter(text)
    except ValueError:
        return
    assert isinstance(parsed.matches({"a": "v"}), bool)
