"""JSON from untrusted bytes, with its nesting bounded before the parser recurses.

CPython's json parser recurses once per level: a few kilobytes of `[` reach the interpreter's
recursion limit and raise `RecursionError`, and every later consumer (re-serialising for an
operator, walking it for validation) recurses too. The depth is measured first, at C speed on
the brackets alone, so only documents within the bound are ever parsed.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

MAX_DEPTH = 64
"""Far above any sender's real payload (Stripe and GitHub nest under 10) and far below the
interpreter's recursion limit."""

_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
for _open in b"[{":
    _STEP[_open] = 1
for _close in b"]}":
    _STEP[_close] = -1


_UTF8 = frozenset({"utf-8", "utf-8-sig"})


class JsonTooDeep(ValueError):
    """The document nests deeper than the bound; a ValueError, like any other bad JSON."""


def nesting_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects, ignoring brackets inside strings."""
    opens = raw.count(b"[") + raw.count(b"{")
    if opens == 0:
        return 0
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads`, refusing documents nested deeper than `max_depth` before parsing them.

    Raises ValueError (JsonTooDeep for the depth, and for any encoding but UTF-8) or
    UnicodeDecodeError, as json.loads does.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if json.detect_encoding(data) not in _UTF8:
        # json.loads would decode UTF-16 and UTF-32 too, past every check written for the
        # bytes of UTF-8 (a NUL or a lone surrogate hidden in them); RFC 8259 8.1 wants UTF-8.
        raise ValueError("JSON must be encoded in UTF-8")
    if data.count(b"[") + data.count(b"{") > max_depth and nesting_depth(data) > max_depth:
        raise JsonTooDeep(f"JSON nests deeper than {max_depth} levels")
    return json.loads(data)
