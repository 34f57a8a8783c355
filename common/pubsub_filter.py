r"""Pub/Sub subscription filters, so the emulator withholds what a real subscription never sees.

Pub/Sub matches a subscription's `filter` against each message's attributes and acknowledges
the messages that do not match on the subscriber's behalf. Code tested locally must not see
messages that production would filter out, so the emulator evaluates the same expressions.
Google's own emulator is no referee here: it accepts a subscription with the filter
`garbage((` and then delivers every message to it (checked with `gcloud beta emulators
pubsub`, Cloud SDK on these machines, 2026-12).

Only the part of Google's syntax that its documentation pins down is accepted; anything else
is rejected rather than guessed at, so that a filter which loads here should also be one that
Pub/Sub accepts, with the same meaning:

    filter      = [ expression ]                  the empty text matches every message
    expression  = term { "AND" term }
                | term { "OR" term }              mixing AND and OR needs parentheses
    term        = [ "NOT" ] simple                NOT binds tightest; "NOT NOT" is refused
    simple      = "(" expression ")" | restriction
    restriction = "attributes" ":" key                                 has the key
                | "attributes" "." key "=" string                      has the key, equal
                | "attributes" "." key "!=" string                     NOT (... = ...)
                | "hasPrefix" "(" "attributes" "." key "," string ")"  has the key, prefix
    key         = bare-key | string
    bare-key    = [A-Za-z0-9_] { [A-Za-z0-9_-] }  anything else must be a string literal
    string      = '"' { character | escape } '"'
    escape      = \\  \"  \'  \`  \?  \a  \b  \f  \n  \r  \t  \v
                | \xHH | \ooo                     ASCII only (up to 0x7F)
                | \uHHHH | \UHHHHHHHH             any Unicode scalar value

Keywords, `attributes` and `hasPrefix` are case-sensitive; whitespace between tokens is free.
The whole filter is at most 256 bytes of UTF-8, Pub/Sub's limit.

Semantic decisions:

* `attributes.K != "v"` is exactly `NOT attributes.K = "v"`, so it matches a message without
  K. Google's table describes it as "messages without the K attribute and the value of v",
  the same wording it uses for `NOT hasPrefix(...)`. (Some third-party emulators instead
  require the key to be present; they disagree with that table.)
* `hasPrefix` and `=` never match a missing key; `hasPrefix(attributes.K, "")` is `attributes:K`.

Refused although Pub/Sub may accept them, because their meaning is not documented precisely
enough to copy: `-` as negation, single-quoted strings, `\x`/octal escapes above 0x7F (byte or
code point?), raw line breaks inside strings, and a filter of nothing but whitespace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

MAX_FILTER_BYTES = 256

__all__ = [
    "MAX_FILTER_BYTES",
    "And",
    "Equals",
    "Filter",
    "HasKey",
    "HasPrefix",
    "Node",
    "Not",
    "Or",
    "parse_filter",
]


@dataclass(frozen=True, slots=True)
class HasKey:
    key: str

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return self.key in attributes

    def decide(
        self, known: Mapping[str, str], present: frozenset[str], absent: frozenset[str]
    ) -> bool | None:
        if self.key in absent:
            return False
        return True if self.key in known or self.key in present else None


@dataclass(frozen=True, slots=True)
class Equals:
    key: str
    value: str

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return attributes.get(self.key) == self.value

    def decide(
        self, known: Mapping[str, str], present: frozenset[str], absent: frozenset[str]
    ) -> bool | None:
        if self.key in absent:
            return False
        return known[self.key] == self.value if self.key in known else None


@dataclass(frozen=True, slots=True)
class HasPrefix:
    key: str
    prefix: str

    def matches(self, attributes: Mapping[str, str]) -> bool:
        value = attributes.get(self.key)
        return value is not None and value.startswith(self.prefix)

    def decide(
        self, known: Mapping[str, str], present: frozenset[str], absent: frozenset[str]
    ) -> bool | None:
        if self.key in absent:
            return False
        return known[self.key].startswith(self.prefix) if self.key in known else None


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return not self.operand.matches(attributes)

    def decide(
        self, known: Mapping[str, str], present: frozenset[str], absent: frozenset[str]
    ) -> bool | None:
        inner = self.operand.decide(known, present, absent)
        return None if inner is None else not inner


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return all(operand.matches(attributes) for operand in self.operands)

    def decide(
        self, known: Mapping[str, str], present: frozenset[str], absent: frozenset[str]
    ) -> bool | None:
        results = [operand.decide(known, present, absent) for operand in self.operands]
        if False in results:
            return False
        return True if all(results) else None


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return any(operand.matches(attributes) for operand in self.operands)

    def decide(
        self, known: Mapping[str, str], present: frozenset[str], absent: frozenset[str]
    ) -> bool | None:
        results = [operand.decide(known, present, absent) for operand in self.operands]
        if True in results:
            return True
        return False if all(r is False for r in results) else None


Node: TypeAlias = HasKey | Equals | HasPrefix | Not | And | Or


@dataclass(frozen=True, slots=True)
class Filter:
    """A parsed filter; `root` is None for the empty filter, which lets everything through."""

    text: str
    root: Node | None

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return self.root is None or self.root.matches(attributes)

    def always_matches(
        self,
        known: Mapping[str, str],
        present: frozenset[str] = frozenset(),
        absent: frozenset[str] = frozenset(),
    ) -> bool:
        """True when every message whose attributes include `known` (and at least the keys
        in `present`, with any values, and none in `absent`) matches, whatever its other
        attributes are.

        Three-valued: an attribute the caller does not know makes a test undecided, and only
        a filter decided true for all of them counts. Sound, not complete: two filters that
        cover each other's gaps are each undecided alone.
        """
        return self.root is None or self.root.decide(known, present, absent) is True


def parse_filter(text: str) -> Filter:
    """Raises ValueError naming the column and what was expected when `text` is not valid."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("filter is not valid Unicode text") from None
    if size > MAX_FILTER_BYTES:
        raise ValueError(f"filter is {size} bytes; Pub/Sub allows at most {MAX_FILTER_BYTES}")
    if not text:
        return Filter(text, None)
    if text.isspace():
        raise ValueError('filter is only whitespace; write "" for no filter')
    return Filter(text, _Parser(text).parse())


TokenKind = Literal["word", "string", "(", ")", ".", ":", ",", "=", "!=", "end"]


@dataclass(frozen=True, slots=True)
class _Token:
    kind: TokenKind
    value: str
    column: int

    def describe(self) -> str:
        if self.kind == "end":
            return "end of filter"
        if self.kind == "string":
            return f"string {self.value!r}"
        return repr(self.value)


_PUNCTUATION: dict[str, TokenKind] = {"(": "(", ")": ")", ".": ".", ":": ":", ",": ","}
_SIMPLE_ESCAPES = {
    "\\": "\\",
    '"': '"',
    "'": "'",
    "`": "`",
    "?": "?",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
}
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_OCTAL_DIGITS = frozenset("01234567")
_UNICODE_ESCAPE_LENGTH = {"u": 4, "U": 8}
_MAX_ASCII = 0x7F
_KEYWORDS = frozenset({"AND", "OR", "NOT"})


def _is_word_start(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char == "_")


def _is_word_char(char: str) -> bool:
    return _is_word_start(char) or char == "-"


def _error(column: int, message: str) -> ValueError:
    return ValueError(f"filter syntax error at column {column}: {message}")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        column = i + 1
        if char.isspace():
            i += 1
        elif char in _PUNCTUATION:
            tokens.append(_Token(_PUNCTUATION[char], char, column))
            i += 1
        elif char == "=":
            tokens.append(_Token("=", char, column))
            i += 1
        elif text.startswith("!=", i):
            tokens.append(_Token("!=", "!=", column))
            i += 2
        elif char == '"':
            value, i = _read_string(text, i)
            tokens.append(_Token("string", value, column))
        elif _is_word_start(char):
            end = i + 1
            while end < len(text) and _is_word_char(text[end]):
                end += 1
            tokens.append(_Token("word", text[i:end], column))
            i = end
        elif char == "-":
            raise _error(column, "'-' as negation is not supported; write NOT")
        elif char == "'":
            raise _error(column, "strings are written in double quotes")
        else:
            raise _error(column, f"unexpected character {char!r}")
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    """Decodes the literal opening at `start`; returns its value and the index after it."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == '"':
            return "".join(out), i + 1
        if char in "\r\n":
            raise _error(i + 1, "line break inside a string; write \\n")
        if char != "\\":
            out.append(char)
            i += 1
            continue
        decoded, i = _read_escape(text, i)
        out.append(decoded)
    raise _error(start + 1, "unterminated string")


def _read_escape(text: str, start: int) -> tuple[str, int]:
    column = start + 1
    if start + 1 >= len(text):
        raise _error(start + 1, "unterminated string")
    kind = text[start + 1]
    if kind in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[kind], start + 2
    if kind in _OCTAL_DIGITS:
        digits = text[start + 1 : start + 4]
        if len(digits) != 3 or not set(digits) <= _OCTAL_DIGITS:
            raise _error(column, "an octal escape is a backslash and three octal digits")
        return _ascii(int(digits, 8), column), start + 4
    if kind == "x":
        digits = text[start + 2 : start + 4]
        if len(digits) != 2 or not set(digits) <= _HEX_DIGITS:
            raise _error(column, "\\x takes exactly two hex digits")
        return _ascii(int(digits, 16), column), start + 4
    if kind in _UNICODE_ESCAPE_LENGTH:
        length = _UNICODE_ESCAPE_LENGTH[kind]
        digits = text[start + 2 : start + 2 + length]
        if len(digits) != length or not set(digits) <= _HEX_DIGITS:
            raise _error(column, f"\\{kind} takes exactly {length} hex digits")
        code = int(digits, 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise _error(column, f"\\{kind}{digits} is not a Unicode scalar value")
        return chr(code), start + 2 + length
    raise _error(column, f"unknown escape \\{kind}")


def _ascii(code: int, column: int) -> str:
    if code > _MAX_ASCII:
        raise _error(column, "\\x and octal escapes are limited to ASCII; use \\u for more")
    return chr(code)


def _after_term(token: _Token) -> str:
    """Explains a token that cannot follow a complete restriction, for the usual slips."""
    found = f"unexpected {token.describe()}"
    if token.kind == "word" and token.value.upper() in _KEYWORDS:
        return f"{found}; AND, OR and NOT are written in uppercase"
    if token.kind == "word":
        return f"{found}; join restrictions with AND or OR"
    if token.kind in ("=", "!="):
        return f"{found}; attributes:KEY only tests presence, compare with attributes.KEY"
    return found


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = _tokenize(text)
        self._at = 0

    def parse(self) -> Node:
        node = self._expression()
        token = self._peek()
        if token.kind == ")":
            raise _error(token.column, "unexpected ')'; unbalanced parentheses?")
        if token.kind != "end":
            raise _error(token.column, _after_term(token))
        return node

    def _expression(self) -> Node:
        first = self._term()
        operator = self._peek_keyword("AND", "OR")
        if operator is None:
            return first
        operands = [first]
        while (keyword := self._peek_keyword("AND", "OR")) is not None:
            if keyword != operator:
                raise _error(
                    self._peek().column,
                    f"{keyword} after {operator} needs parentheses: Pub/Sub does not mix "
                    "AND and OR at one level",
                )
            self._advance()
            operands.append(self._term())
        return And(tuple(operands)) if operator == "AND" else Or(tuple(operands))

    def _term(self) -> Node:
        if self._peek_keyword("NOT") is None:
            return self._simple()
        self._advance()
        if self._peek_keyword("NOT") is not None:
            raise _error(self._peek().column, "NOT NOT needs parentheses: NOT (NOT ...)")
        return Not(self._simple())

    def _simple(self) -> Node:
        token = self._peek()
        if token.kind == "(":
            self._advance()
            node = self._expression()
            closing = self._peek()
            if closing.kind == "end":
                raise _error(closing.column, f"the '(' at column {token.column} is never closed")
            if closing.kind != ")":
                raise _error(closing.column, _after_term(closing))
            self._advance()
            return node
        if token.kind == "word" and token.value == "attributes":
            return self._restriction()
        if token.kind == "word" and token.value not in _KEYWORDS and self._peek(1).kind == "(":
            if token.value != "hasPrefix":
                raise _error(
                    token.column, f"unknown function {token.value!r}; only hasPrefix exists"
                )
            return self._has_prefix()
        raise _error(
            token.column, f"expected attributes, hasPrefix, NOT or '(', found {token.describe()}"
        )

    def _restriction(self) -> Node:
        self._advance()
        separator = self._peek()
        if separator.kind == ":":
            self._advance()
            return HasKey(self._key())
        if separator.kind != ".":
            raise _error(
                separator.column,
                f"expected '.' or ':' after attributes, found {separator.describe()}",
            )
        self._advance()
        key = self._key()
        operator = self._peek()
        if operator.kind not in ("=", "!="):
            raise _error(
                operator.column, f"expected = or != after the key, found {operator.describe()}"
            )
        self._advance()
        equals = Equals(key, self._string("a string value"))
        return equals if operator.kind == "=" else Not(equals)

    def _has_prefix(self) -> Node:
        self._advance()
        self._expect("(", "'('")
        self._expect_word("attributes")
        self._expect(".", "'.' (hasPrefix takes attributes.KEY)")
        key = self._key()
        self._expect(",", "','")
        prefix = self._string("a string prefix")
        self._expect(")", "')' to close hasPrefix")
        return HasPrefix(key, prefix)

    def _key(self) -> str:
        token = self._peek()
        if token.kind not in ("word", "string"):
            raise _error(token.column, f"expected an attribute key, found {token.describe()}")
        self._advance()
        return token.value

    def _string(self, what: str) -> str:
        token = self._peek()
        if token.kind != "string":
            raise _error(
                token.column, f"expected {what} in double quotes, found {token.describe()}"
            )
        self._advance()
        return token.value

    def _expect(self, kind: TokenKind, what: str) -> None:
        token = self._peek()
        if token.kind != kind:
            raise _error(token.column, f"expected {what}, found {token.describe()}")
        self._advance()

    def _expect_word(self, word: str) -> None:
        token = self._peek()
        if token.kind != "word" or token.value != word:
            raise _error(token.column, f"expected {word}, found {token.describe()}")
        self._advance()

    def _peek_keyword(self, *keywords: str) -> str | None:
        token = self._peek()
        return token.value if token.kind == "word" and token.value in keywords else None

    def _peek(self, ahead: int = 0) -> _Token:
        return self._tokens[min(self._at + ahead, len(self._tokens) - 1)]

    def _advance(self) -> None:
        self._at += 1
