"""What PostgreSQL and pg8000 can carry, checked before any SQL sees a value.

PostgreSQL text and jsonb hold neither NUL nor lone UTF-16 surrogates (pg8000 cannot even
encode the latter, and fails after it has started talking to the server), `timestamptz` and
Python disagree on the representable range once an offset is applied, and `bigint` stops at
2^63-1. Each check returns the reason a value cannot be stored, or None, so every layer raises
its own error: a 400 at the edge, a dead letter in a worker.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1
MAX_INT_DIGITS = 19
"""Longest decimal a bigint needs; longer strings are refused before `int()` parses them."""

# A raw body can only hide a NUL or a lone surrogate behind one of these: an escape `\u0000`
# or `\uD800`-`\uDFFF`, or surrogate bytes that json.loads decodes with `surrogatepass`.
_SUSPECT = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})|\xed[\xa0-\xbf]")


def text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid Unicode (a lone surrogate)"
    return None


def datetime_problem(value: datetime) -> str | None:
    """PostgreSQL stores instants in UTC; an offset can push Python's year 1 or 9999 out."""
    if value.utcoffset() is None:
        return "has no UTC offset"
    try:
        value.astimezone(UTC)
    except OverflowError:
        return "is outside the representable time range"
    return None


def bigint_problem(value: int) -> str | None:
    if not BIGINT_MIN <= value <= BIGINT_MAX:
        return "is outside the 64-bit integer range"
    return None


def parse_bounded_int(raw: str) -> int | None:
    """A non-negative bigint written in ASCII digits; None for anything else.

    `int()` accepts Unicode digits and spends quadratic time on thousands of them, so the
    text is checked before it is parsed.
    """
    if not (0 < len(raw) <= MAX_INT_DIGITS and raw.isascii() and raw.isdigit()):
        return None
    value = int(raw)
    return value if value <= BIGINT_MAX else None


def attributes_problem(attributes: Mapping[str, str]) -> tuple[str, str] | None:
    """(attribute name, reason) for the first key or value that cannot be stored."""
    for key, value in attributes.items():
        if (reason := text_problem(key)) is not None:
            return scrub(key), f"attribute name {reason}"
        if (reason := text_problem(value)) is not None:
            return key, f"attribute {reason}"
    return None


def json_problem(raw: bytes, document: Any) -> tuple[str, str] | None:
    """(JSON pointer, reason) for the first string or key of `document` that PostgreSQL
    cannot store. `raw` is what it was parsed from: when no escape or byte sequence in it can
    produce such a string, the walk is skipped, so ordinary bodies cost one regex scan."""
    if _SUSPECT.search(raw) is None:
        return None
    for pointer, text in _strings(document):
        if (reason := text_problem(text)) is not None:
            return pointer, reason
    return None


def scrub(value: str) -> str:
    """A storable rendering for diagnostics (dead-letter attributes, reasons): NUL and lone
    surrogates become U+FFFD. Never used on data that is applied."""
    if text_problem(value) is None:
        return value
    cleaned = value.replace("\x00", "\ufffd")
    return cleaned.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def scrub_mapping(values: Mapping[str, str]) -> dict[str, str]:
    return {scrub(k): scrub(v) for k, v in values.items()}


def _strings(document: Any) -> Iterator[tuple[str, str]]:
    """Every key and string value with its JSON pointer; iterative, so depth is no hazard."""
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        pointer, node = stack.pop()
        if isinstance(node, str):
            yield pointer or "/", node
        elif isinstance(node, dict):
            for key, value in node.items():
                child = f"{pointer}/{_escape(key)}"
                yield child, key
                stack.append((child, value))
        elif isinstance(node, list):
            stack.extend((f"{pointer}/{i}", value) for i, value in enumerate(node))


def _escape(key: str) -> str:
    return scrub(key).replace("~", "~0").replace("/", "~1")
