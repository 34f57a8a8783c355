"""`/admin/events…`: search the event log, show one event with every handler's outcome, erase
its payload, and resend it through its handlers.

Erase and resend are audited like replays: the `operator_actions` row commits with the
effect (erase) or records what was published (resend).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import unquote_to_bytes

from flask import Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine

from common.db import event_search, events
from common.db.event_search import EventQuery, HandlerOutcome, PathMatch
from common.envelope import format_time
from common.errors import BadRequest, Gone, NotFound, PublishError, ServiceUnavailable
from common.http import json_response
from common.logging import get_logger
from common.messaging.publisher import Publisher
from common.storable import text_problem
from common.topology import HEADER_PREFIX, REPLAY_TO, Topology, get_topology
from common.webhook_body import payload_document
from functions.operations import (
    MAX_PAGE,
    NAME,
    Caller,
    EventKeyIn,
    Text,
    Timestamp,
    int_arg,
    parse,
    parse_json,
)

log = get_logger(__name__)

SEARCH_PARAMETERS = frozenset(
    {"source", "type", "since", "until", "handler", "outcome", "path", "q", "limit", "cursor",
     "order"}
)  # fmt: skip
MAX_QUERY_STRING_BYTES = 64 * 1024


HandlerName = Annotated[str, Field(pattern=NAME)]


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str | None = Field(default=None, pattern=NAME)
    type: Text | None = Field(default=None, max_length=256)
    since: Timestamp | None = None
    until: Timestamp | None = None
    handler: str | None = Field(default=None, pattern=NAME)
    outcome: Literal["applied", "ignored", "failed", "dead_lettered", "pending"] | None = None
    q: Text | None = Field(default=None, min_length=1, max_length=event_search.MAX_QUERY_CHARS)
    order: Literal["asc", "desc"] = "asc"


class EraseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(min_length=1, max_length=500)


class ResendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(min_length=1, max_length=500)
    handlers: list[HandlerName] | None = Field(default=None, min_length=1, max_length=64)


@dataclass
class EventOperations:
    engine_factory: Callable[[], Engine]
    publisher_factory: Callable[[], Publisher] | None = None
    topology: Topology = field(default_factory=get_topology)

    def search(self, request: Request) -> Response:
        query = self.query(strict_query(request))
        handlers = self.topology.handlers
        with self.engine_factory().connect() as conn:
            page = events.search(conn, query, handlers)
            more = len(page) > query.limit - 1
            page = page[: query.limit - 1]
            found = events.records(
                conn, [e.id for e in page], [h.name for h in handlers], pending_only=True
            )
        items = [
            event_json(e, event_search.outcomes(e.source, e.event_type, handlers, found[e.id]))
            for e in page
        ]
        next_cursor = str(page[-1].id) if more and page else None
        return json_response({"items": items, "next_cursor": next_cursor})

    def query(self, args: list[tuple[str, str]]) -> EventQuery:
        """The request's search, validated whole; `limit` is one more than the page."""
        single: dict[str, str] = {}
        paths: list[str] = []
        for name, value in args:
            if name == "path":
                paths.append(value)
            elif name in single:
                raise BadRequest(f"{name} given more than once", field=name)
            elif name not in SEARCH_PARAMETERS:
                raise BadRequest(f"unknown query parameter {name!r}", field=name)
            else:
                single[name] = value
        if len(paths) > event_search.MAX_PATHS:
            raise BadRequest(f"at most {event_search.MAX_PATHS} path parameters", field="path")
        matches = []
        for raw in paths:
            try:
                matches.append(PathMatch.parse(raw))
            except ValueError as exc:
                raise BadRequest(str(exc), field="path") from exc
        limit = int_arg(single.pop("limit", None), "limit", 1, MAX_PAGE) or 100
        cursor = int_arg(single.pop("cursor", None), "cursor", 0, 2**62)
        given = parse(SearchIn, single)
        if given.handler is not None and self.topology.handler(given.handler) is None:
            raise BadRequest(f"no handler {given.handler!r} in the topology", field="handler")
        return EventQuery(
            source=given.source, type=given.type, since=given.since, until=given.until,
            handler=given.handler, outcome=given.outcome, paths=tuple(matches), text=given.q,
            cursor=cursor, descending=given.order == "desc", limit=limit + 1,
        )  # fmt: skip

    def show(self, source: str, event_id: str) -> Response:
        parse(EventKeyIn, {"source": source, "event_id": event_id})
        handlers = self.topology.handlers
        with self.engine_factory().connect() as conn:
            event = events.get(conn, source, event_id)
            if event is None:
                raise NotFound(f"no event {source}/{event_id}")
            stored = events.payload(conn, source, event_id)
            found = events.records(conn, [event.id], [h.name for h in handlers], pending_only=False)
            txs = events.transactions(conn, source, event_id)
        handled = event_search.outcomes(source, event.event_type, handlers, found[event.id])
        body = event_json(event, handled, detail=True)
        body["payload"] = as_sent(stored) if stored else None
        if stored and stored.body is not None and stored.document is None:
            body["payload_base64"] = base64.b64encode(stored.body).decode()
        body["erase_reason"] = event.erase_reason
        body["transactions"] = txs
        return json_response(body)

    def erase(self, source: str, event_id: str, request: Request, caller: Caller) -> Response:
        parse(EventKeyIn, {"source": source, "event_id": event_id})
        reason = parse_json(EraseIn, request).reason
        with self.engine_factory().begin() as conn:
            erased = events.erase(conn, source, event_id, reason)
            if erased is None:
                raise NotFound(f"no event {source}/{event_id}")
            result = {"erased": erased.erased, "dead_letters_discarded": erased.dead_letters}
            caller.audit(
                conn, action="event.erase", reason=reason, params=_key(source, event_id),
                result=result,
            )  # fmt: skip
        log.info("event payload erased", source=source, event_id=event_id,
                 erased=erased.erased, actor=caller.actor)  # fmt: skip
        return json_response(result)

    def resend(self, source: str, event_id: str, request: Request, caller: Caller) -> Response:
        parse(EventKeyIn, {"source": source, "event_id": event_id})
        body = parse_json(ResendIn, request)
        with self.engine_factory().connect() as conn:
            event = events.get(conn, source, event_id)
            stored = events.payload(conn, source, event_id)
        if event is None or stored is None:
            raise NotFound(f"no event {source}/{event_id}")
        if stored.body is None:
            raise Gone(
                f"the payload of {source}/{event_id} was erased ({stored.erase_reason})",
                erased_at=stored.erased_at.isoformat() if stored.erased_at else None,
            )
        names = self._resend_to(event, body.handlers)
        topic = self._topic(source)
        if self.publisher_factory is None:
            raise ServiceUnavailable("resends need a publisher, and none is configured")
        publisher = self.publisher_factory()
        published: list[dict[str, str]] = []
        failure: PublishError | None = None
        for name in names:
            attributes = {**resend_attributes(event), REPLAY_TO: name}
            try:
                message_id = publisher.publish(topic, stored.body, attributes)
            except PublishError as exc:
                failure = exc
                break
            published.append({"handler": name, "message_id": message_id})
        params = {**_key(source, event_id), "handlers": names}
        result: dict[str, Any] = {"published": published}
        if failure is not None:
            result["error"] = "publish failed"
        with self.engine_factory().begin() as conn:
            caller.audit(
                conn, action="event.resend", reason=body.reason, params=params, result=result
            )
        if failure is not None:
            log.warning("resend publish failed", error=str(failure), published=len(published))
            raise ServiceUnavailable(
                f"the broker took {len(published)} of {len(names)} messages; retry later"
            ) from failure
        log.info("event resent", source=source, event_id=event_id, handlers=names,
                 actor=caller.actor)  # fmt: skip
        return json_response({"published": published})

    def _resend_to(self, event: events.Event, asked: Sequence[str] | None) -> list[str]:
        taking = [h.name for h in self.topology.handlers if h.takes(event.source, event.event_type)]
        if asked is None:
            if not taking:
                raise BadRequest(f"no handler takes {event.source} {event.event_type!r} events")
            return taking
        chosen = list(dict.fromkeys(asked))
        for name in chosen:
            if name not in taking:
                raise BadRequest(
                    f"handler {name!r} does not take {event.source} {event.event_type!r} events",
                    field="handlers",
                )
        return chosen

    def _topic(self, source: str) -> str:
        declared = self.topology.source(source)
        if declared is None:
            raise BadRequest(f"source {source!r} is no longer in the topology")
        return declared.topic


def as_sent(stored: events.StoredPayload) -> Any:
    """The payload in the sender's own key order (jsonb sorts keys), parsed from the bytes
    kept; the jsonb copy when the bytes are gone or not JSON-shaped."""
    if stored.body is not None and stored.document is not None:
        try:
            return payload_document(stored.body, stored.content_type)
        except BadRequest:
            pass
    return stored.document


def resend_attributes(event: events.Event) -> dict[str, str]:
    """The attributes ingest gave the event, rebuilt from the log (no trace: a resend starts
    its own)."""
    attributes = {
        "source": event.source,
        "event_id": event.event_id,
        "received_at": format_time(event.received_at),
    }
    if event.event_type:
        attributes["event_type"] = event.event_type
    if event.content_type:
        attributes["content_type"] = event.content_type
    for name, value in event.headers.items():
        attributes[HEADER_PREFIX + name] = value
    return attributes


def strict_query(request: Request) -> list[tuple[str, str]]:
    """The query string as (name, value) pairs, refusing what the lenient parser would turn
    into U+FFFD (bytes that are not UTF-8) or pass on to PostgreSQL (NUL)."""
    raw = request.query_string
    if len(raw) > MAX_QUERY_STRING_BYTES:
        raise BadRequest("the query string is too long")
    pairs = []
    for piece in raw.split(b"&"):
        if not piece:
            continue
        name, _, value = piece.partition(b"=")
        try:
            decoded = [unquote_to_bytes(p.replace(b"+", b" ")).decode() for p in (name, value)]
        except UnicodeDecodeError as exc:
            raise BadRequest("the query string is not UTF-8") from exc
        for text in decoded:
            if (problem := text_problem(text)) is not None:
                raise BadRequest(f"a query parameter {problem}")
        pairs.append((decoded[0], decoded[1]))
    return pairs


def event_json(
    event: events.Event, handled: Sequence[HandlerOutcome], *, detail: bool = False
) -> dict[str, Any]:
    return {
        "id": event.id,
        "source": event.source,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "outcome": event_search.summary(handled),
        "received_at": event.received_at.isoformat(),
        "recorded_at": event.recorded_at.isoformat(),
        "content_type": event.content_type,
        "body_sha256": event.body_sha256.hex() if event.body_sha256 is not None else None,
        "body_bytes": event.body_bytes,
        "message_id": event.message_id,
        "headers": event.headers,
        "payload_erased_at": (
            event.payload_erased_at.isoformat() if event.payload_erased_at else None
        ),
        "handlers": [handler_json(h, detail=detail) for h in handled],
    }


def handler_json(handled: HandlerOutcome, *, detail: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "handler": handled.handler,
        "outcome": handled.outcome,
        "effects": handled.effects,
        "attempts": handled.attempts,
        "last_error": handled.last_error,
        "dead_letter_id": handled.dead_letter_id,
    }
    if detail:
        body["processed_at"] = handled.processed_at.isoformat() if handled.processed_at else None
        body["dead_letters"] = [
            {"id": d.id, "state": d.state, "reason": d.reason} for d in handled.dead_letters
        ]
    return body


def _key(source: str, event_id: str) -> dict[str, Any]:
    return {"source": source, "event_id": event_id}
