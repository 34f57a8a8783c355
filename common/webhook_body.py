"""A verified body, parsed by its media type, and the values topology.yaml points into it.

Pure: no I/O, so every rule (form bodies, Slack's `payload` field, id qualifiers) is unit
tested without a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from common import bounded_json
from common.errors import BadRequest
from common.headers import HeaderLookup
from common.json_pointer import resolve
from common.storable import json_problem, text_problem
from common.topology import FieldRef

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MAX_VALUE_LENGTH = 256


@dataclass(frozen=True, slots=True)
class ParsedBody:
    document: Any = None
    form: dict[str, str] = field(default_factory=dict)


def parse_body(body: bytes, media_type: str) -> ParsedBody:
    """Refuses, as 400s naming the field, what no handler could store: an accepted event
    must never fail later for something visible now."""
    if media_type == JSON:
        return ParsedBody(document=_json(body, "body"))
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("form body is not valid UTF-8 form encoding") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        for text in (name, value):
            if (reason := text_problem(text)) is not None:
                raise BadRequest(f"form field {name!r} {reason}", field=f"form field {name}")
        form.setdefault(name, value)
    document = None
    if "payload" in form:  # Slack interactivity and GitHub form hooks wrap JSON in `payload`
        document = _json(form["payload"].encode(), "form field payload")
    return ParsedBody(document=document, form=form)


def payload_document(body: bytes, content_type: str | None) -> Any:
    """The payload as one JSON document, for handlers and search: a JSON body, or a form
    body's fields (its JSON `payload` field when there is one). `BadRequest` otherwise."""
    media = FORM if content_type == FORM else JSON
    parsed = parse_body(body, media)
    return parsed.document if media == JSON or parsed.document is not None else parsed.form


def _json(raw: bytes, where: str) -> object:
    try:
        document = bounded_json.loads(raw)
    except bounded_json.JsonTooDeep as exc:
        raise BadRequest(f"{where}: {exc}", field=where) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{where} is not valid JSON", field=where) from exc
    if (found := json_problem(raw, document)) is not None:
        pointer, reason = found
        raise BadRequest(f"JSON field {pointer} {reason}", field=f"JSON field {pointer}")
    return document


def lookup(ref: FieldRef, headers: HeaderLookup, parsed: ParsedBody) -> str | None:
    """The referenced value as a non-empty string, or None."""
    value: Any
    if ref.header:
        value = headers.get(ref.header)
    elif ref.form_field:
        value = parsed.form.get(ref.form_field)
    else:
        value = resolve(parsed.document, ref.json_pointer or "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    if not value.isprintable():
        # Ids travel as message attributes and land in PostgreSQL text: no control characters.
        raise BadRequest(f"{ref.describe()} contains control characters", field=ref.describe())
    if len(value) > MAX_VALUE_LENGTH:
        raise BadRequest(
            f"{ref.describe()} is longer than {MAX_VALUE_LENGTH} characters", field=ref.describe()
        )
    return value


def first_present(
    refs: Sequence[FieldRef], headers: HeaderLookup, parsed: ParsedBody
) -> str | None:
    for ref in refs:
        value = lookup(ref, headers, parsed)
        if value is not None:
            return value
    return None


def event_id(
    refs: Sequence[FieldRef],
    qualifiers: Sequence[FieldRef],
    headers: HeaderLookup,
    parsed: ParsedBody,
) -> str:
    base = first_present(refs, headers, parsed)
    if base is None:
        where = " or ".join(ref.describe() for ref in refs)
        raise BadRequest(f"missing event id: {where} is absent or empty", field=refs[0].describe())
    extra = [v for ref in qualifiers if (v := lookup(ref, headers, parsed)) is not None]
    return ":".join([base, *extra])
