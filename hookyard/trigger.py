"""Realistic webhook bodies for `hookyard trigger`: shipped fixtures filled with fresh values.

A fixture is a file `hookyard/fixtures/<source>/<name>.json` (a JSON body) or `.form` (a form
body: one `field=value` per line, the value as written and not URL-encoded; blank lines and
`#` lines are skipped). Its name is what `hookyard trigger SOURCE NAME` takes and, for a
source that sends the event type in a header (GitHub, Shopify), the type it sends: the name of
`shopify/orders/create.json` is `orders/create`. A source that reads the type from the body
finds it in the fixture itself.

A fixture marks what changes on every trigger with placeholders, `{{kind}}` or
`{{kind:arg}}`, inside JSON strings or form values:

    {{id:PREFIX}}    PREFIX + 24 random letters and digits (Stripe `evt_…`, Slack `Ev…`)
    {{sid:PREFIX}}   PREFIX + 32 hex digits (Twilio `SM…`)
    {{sha:LABEL}}    40 hex digits (a Git object)
    {{int:LABEL}}    a random 15-digit integer (GitHub and Shopify ids)
    {{uuid:LABEL}}   a random UUID
    {{now}}          Unix seconds; {{now:iso}} RFC 3339 in UTC; {{now:ts}} Slack's
                     "seconds.micros"; {{now:rfc2822}} an e-mail date (Twilio)
    {{account}} {{amount}} {{currency}}
                     what --account, --amount and --currency give (acct_1, 2000, usd)

One placeholder text is one value throughout a trigger, so `{{id:ch_}}` names the same charge
wherever it appears, and `{{sha:before}}`/`{{sha:after}}` are two commits. A JSON string that
is exactly one placeholder becomes the typed value (`"{{amount}}"` is the number 2000); inside
longer text a placeholder is text.

`--set a.b.0.c=VALUE` then writes into the filled body (a form's path is its field name): the
value is JSON when it parses as JSON, else the string as given. `--event-id` pins the event id
where the source reads it (a header or the body), so a second trigger is a duplicate.
A source's `sender-headers.json` names the other headers its sender sends (Shopify's shop
domain, GitHub's hook id, each sender's User-Agent), filled the same way and sent unsigned.
The result is checked with the webhook function's own parsing, so what would be refused
there is refused here, as a usage error, before anything is signed.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import string
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any
from urllib.parse import urlencode

from common import bounded_json
from common.errors import BadRequest, UsageError
from common.storable import BIGINT_MAX, parse_bounded_int
from common.topology import FieldRef, Source
from common.webhook_body import FORM, JSON, MAX_VALUE_LENGTH, event_id, first_present, parse_body

FIXTURES: Traversable = files("hookyard").joinpath("fixtures")
MEDIA_TYPES = {".json": JSON, ".form": FORM}
DEFAULT_ACCOUNT = "acct_1"
DEFAULT_AMOUNT = 2000
DEFAULT_CURRENCY = "usd"
FILLS = ("account", "amount", "currency")
PLACEHOLDER = re.compile(r"\{\{([a-z0-9]+)(?::([^{}]*))?\}\}")
_ALPHANUMERIC = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class Fixture:
    source: str
    name: str
    media_type: str
    template: str

    @property
    def fills(self) -> frozenset[str]:
        """Which of --account, --amount, --currency this fixture has a place for."""
        return frozenset(m[1] for m in PLACEHOLDER.finditer(self.template)) & set(FILLS)


@dataclass(frozen=True, slots=True)
class Fill:
    """--account, --amount and --currency, already checked; None keeps the default."""

    account: str | None = None
    amount: int | None = None
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    path: str
    value: Any


@dataclass(frozen=True, slots=True)
class Triggered:
    """What to sign and send, and what the webhook function will read from it."""

    body: bytes
    media_type: str
    delivery_id: str | None
    """The id header's value, for a source that reads the event id from a header."""
    type_header: str | None
    """The type header's value, for a source that reads the event type from a header."""
    event_id: str
    event_type: str | None
    headers: dict[str, str] = field(default_factory=dict)
    """The sender's other headers, from the source's `sender-headers.json`."""


SENDER_HEADERS = "sender-headers.json"


def catalogue(root: Traversable = FIXTURES) -> dict[str, dict[str, Traversable]]:
    """Every fixture file by source and name, sorted."""
    found: dict[str, dict[str, Traversable]] = {}
    for folder in sorted(root.iterdir(), key=lambda entry: entry.name):
        if folder.is_dir():
            fixtures = dict(sorted(_files(folder, ""), key=lambda item: item[0]))
            if fixtures:
                found[folder.name] = fixtures
    return found


def _files(folder: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
    for entry in folder.iterdir():
        if entry.is_dir():
            yield from _files(entry, f"{prefix}{entry.name}/")
        elif entry.name != SENDER_HEADERS:
            for suffix in MEDIA_TYPES:
                if entry.name.endswith(suffix) and len(entry.name) > len(suffix):
                    yield f"{prefix}{entry.name.removesuffix(suffix)}", entry


def load(source: str, name: str, root: Traversable = FIXTURES) -> Fixture:
    fixtures = catalogue(root)
    if source not in fixtures:
        raise UsageError(f"no fixtures for source {source!r} (there are: {', '.join(fixtures)})")
    entry = fixtures[source].get(name)
    if entry is None:
        names = ", ".join(fixtures[source])
        raise UsageError(f"no {source} fixture {name!r} (there are: {names})")
    media_type = next(m for suffix, m in MEDIA_TYPES.items() if entry.name.endswith(suffix))
    return Fixture(source, name, media_type, entry.read_text(encoding="utf-8"))


def parse_account(raw: str) -> str:
    if not raw.strip() or not raw.isprintable() or len(raw) > MAX_VALUE_LENGTH:
        raise UsageError(f"--account must be printable text of 1 to {MAX_VALUE_LENGTH} characters")
    return raw


def parse_amount(raw: str) -> int:
    """Minor units, as the ledger takes them: a non-negative integer within bigint."""
    amount = parse_bounded_int(raw.strip())
    if amount is None:
        raise UsageError(
            f"--amount must be a whole number of minor units from 0 to {BIGINT_MAX}, not {raw!r}"
        )
    return amount


def parse_currency(raw: str) -> str:
    if not (len(raw) == 3 and raw.isascii() and raw.isalpha()):
        raise UsageError(f"--currency must be a three-letter ISO code such as usd, not {raw!r}")
    return raw.lower()


def parse_assignment(raw: str) -> Assignment:
    path, sep, text = raw.partition("=")
    if not sep or not path or "" in path.split("."):
        raise UsageError(f"--set takes PATH=VALUE with a dotted PATH such as a.b.0.c, not {raw!r}")
    return Assignment(path, _literal(text, raw))


def _literal(text: str, raw: str) -> Any:
    """JSON when `text` is JSON (strict: no NaN), else the text itself."""
    try:
        value = bounded_json.loads(text)
    except bounded_json.JsonTooDeep as exc:
        raise UsageError(f"--set {raw!r}: the value {exc}") from None
    except (ValueError, UnicodeDecodeError):
        return text
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return text
    return value


def build(
    fixture: Fixture,
    source: Source,
    *,
    fill: Fill | None = None,
    assignments: Sequence[Assignment] = (),
    pinned_id: str | None = None,
    now: datetime | None = None,
) -> Triggered:
    """Fresh values, then the pinned id, then every --set, in that order: an explicit --set
    has the last word."""
    fill = fill or Fill()
    unused = [name for name in FILLS if getattr(fill, name) is not None]
    unused = [name for name in unused if name not in fixture.fills]
    if unused:
        raise UsageError(
            f"{fixture.source} {fixture.name} has no {unused[0]} to fill;"
            " use --set PATH=VALUE to change its body"
        )
    values = _Values(fill, now or datetime.now(UTC))
    document: Any
    if fixture.media_type == JSON:
        document = _fill_json(json.loads(fixture.template), values)
    else:
        document = {name: values.text(value) for name, value in _form_lines(fixture.template)}
    id_ref = _id_location(source, document, fixture.media_type)
    delivery_id = None
    if id_ref.header:
        delivery_id = _delivery_id(source) if pinned_id is None else pinned_id
    elif pinned_id is not None:
        _write(document, _ref_path(id_ref), pinned_id, f"--event-id ({id_ref.describe()})")
    for assignment in assignments:
        if fixture.media_type == JSON:
            path = assignment.path.split(".")
            _write(document, path, assignment.value, f"--set {assignment.path}")
        else:
            document[assignment.path] = _form_value(assignment)
    body = _serialize(document, fixture.media_type)
    type_ref = source.event_type[0] if source.event_type else None
    type_header = fixture.name if type_ref is not None and type_ref.header else None
    triggered = _checked(source, fixture, body, delivery_id, type_header)
    headers = {name: values.text(value) for name, value in sender_headers(fixture.source).items()}
    return replace(triggered, headers=headers)


def sender_headers(source: str, root: Traversable = FIXTURES) -> dict[str, str]:
    """Header templates the source's sender sends besides its signature, id and type."""
    entry = root / source / SENDER_HEADERS
    if not entry.is_file():
        return {}
    found: dict[str, str] = json.loads(entry.read_text(encoding="utf-8"))
    return found


def _form_lines(template: str) -> Iterator[tuple[str, str]]:
    for line in template.splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            yield name, value


def _id_location(source: Source, document: Any, media_type: str) -> FieldRef:
    """Where the webhook function will find the event id: the first of the source's places
    that this body has, as the function itself picks it."""
    for ref in source.event_id:
        if ref.header:
            return ref
        if ref.form_field and media_type == FORM and ref.form_field in document:
            return ref
        if ref.json_pointer and media_type == JSON and _present(document, _ref_path(ref)):
            return ref
    places = " or ".join(ref.describe() for ref in source.event_id)
    raise UsageError(f"this {source.name} fixture has no event id ({places})")


def _ref_path(ref: FieldRef) -> list[str]:
    if ref.form_field:
        return [ref.form_field]
    tokens = (ref.json_pointer or "").split("/")[1:]
    return [token.replace("~1", "/").replace("~0", "~") for token in tokens]


def _present(document: Any, path: list[str]) -> bool:
    node = document
    for token in path:
        node = _child(node, token)
        if node is None:
            return False
    return True


def _child(node: Any, token: str) -> Any:
    if isinstance(node, dict):
        return node.get(token)
    if isinstance(node, list) and token.isascii() and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    return None


def _write(document: Any, path: list[str], value: Any, shown: str) -> None:
    """Writes an existing place, or a new key of an existing object; never invents the
    objects on the way, so a misspelt path is an error rather than a new field."""
    if isinstance(document, dict) and len(path) == 1:  # a form, or a top-level key
        document[path[0]] = value
        return
    node = document
    for depth, token in enumerate(path[:-1]):
        node = _child(node, token)
        if not isinstance(node, dict | list):
            where = ".".join(path[: depth + 1])
            problem = "does not exist" if node is None else f"is a {_kind(node)}"
            raise UsageError(f"{shown}: {where} {problem} in this body")
    last = path[-1]
    if isinstance(node, dict):
        node[last] = value
    elif last.isascii() and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
    else:
        raise UsageError(f"{shown}: {'.'.join(path[:-1])} has no item {last}")


def _kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _form_value(assignment: Assignment) -> str:
    value = assignment.value
    if isinstance(value, dict | list):
        raise UsageError(f"--set {assignment.path}: a form field holds text, not an {_kind(value)}")
    return value if isinstance(value, str) else json.dumps(value)


def _serialize(document: Any, media_type: str) -> bytes:
    if media_type == JSON:
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    else:
        text = urlencode(list(document.items()))
    return text.encode("utf-8", "surrogatepass")


def _checked(
    source: Source, fixture: Fixture, body: bytes, delivery_id: str | None, type_header: str | None
) -> Triggered:
    """The webhook function's own reading of the body: an event it would refuse (a NUL, no
    event id, too deep, too large, an id with control characters) is refused here."""
    if fixture.media_type not in source.content_types:
        raise UsageError(f"{source.name} does not take {fixture.media_type} bodies")
    if len(body) > source.max_body_bytes:
        raise UsageError(f"the body is over {source.name}'s limit of {source.max_body_bytes} bytes")
    headers: dict[str, str] = {}
    if delivery_id is not None and source.event_id[0].header:
        headers[source.event_id[0].header] = delivery_id
    if type_header is not None and source.event_type[0].header:
        headers[source.event_type[0].header] = type_header
    try:
        parsed = parse_body(body, fixture.media_type)
        found_id = event_id(source.event_id, source.event_id_qualifiers, headers, parsed)
        found_type = first_present(source.event_type, headers, parsed)
    except BadRequest as exc:
        raise UsageError(f"{source.name} would refuse this body: {exc.detail}") from None
    return Triggered(body, fixture.media_type, delivery_id, type_header, found_id, found_type)


def _delivery_id(source: Source) -> str:
    """Standard Webhooks and Svix send `msg_…` ids; GitHub and Shopify send UUIDs."""
    if source.scheme in {"standard-webhooks", "svix"}:
        return "msg_" + _random_text(27)
    return str(uuid.uuid4())


def _random_text(length: int) -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def _fill_json(node: Any, values: _Values) -> Any:
    if isinstance(node, str):
        return values.json(node)
    if isinstance(node, dict):
        return {key: _fill_json(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill_json(value, values) for value in node]
    return node


class _Values:
    """One value per placeholder text for the length of one trigger."""

    def __init__(self, fill: Fill, now: datetime) -> None:
        self._fill = fill
        self._now = now.astimezone(UTC)
        self._seen: dict[str, Any] = {}

    def json(self, text: str) -> Any:
        whole = PLACEHOLDER.fullmatch(text)
        if whole:
            return self._value(whole)
        return self.text(text)

    def text(self, text: str) -> str:
        return PLACEHOLDER.sub(lambda match: str(self._value(match)), text)

    def _value(self, match: re.Match[str]) -> Any:
        key = match[0]
        if key not in self._seen:
            self._seen[key] = self._make(match[1], match[2] or "")
        return self._seen[key]

    def _make(self, kind: str, arg: str) -> Any:
        makers: dict[str, Callable[[], Any]] = {
            "id": lambda: arg + _random_text(24),
            "sid": lambda: arg + secrets.token_hex(16),
            "sha": lambda: secrets.token_hex(20),
            "int": lambda: 10**14 + secrets.randbelow(9 * 10**14),
            "uuid": lambda: str(uuid.uuid4()),
            "now": lambda: self._time(arg),
            "account": lambda: self._fill.account or DEFAULT_ACCOUNT,
            "amount": lambda: DEFAULT_AMOUNT if self._fill.amount is None else self._fill.amount,
            "currency": lambda: self._fill.currency or DEFAULT_CURRENCY,
        }
        maker = makers.get(kind)
        if maker is None:
            raise UsageError(f"fixture placeholder {{{{{kind}}}}} is not one this version knows")
        return maker()

    def _time(self, style: str) -> Any:
        now = self._now
        if style == "":
            return math.floor(now.timestamp())
        if style == "iso":
            return now.replace(microsecond=0).isoformat().replace("+00:00", "Z")
        if style == "ts":
            return f"{math.floor(now.timestamp())}.{now.microsecond:06d}"
        if style == "rfc2822":
            return format_datetime(now.replace(microsecond=0))
        raise UsageError(f"fixture placeholder {{{{now:{style}}}}} is not one this version knows")
