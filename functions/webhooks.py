"""`POST /webhooks/{source}`: verify, validate, publish, and only then answer 202.

This function never touches the database: it reads the raw body once (bounded), verifies
the signature over those exact bytes, extracts the event id and type, and publishes the raw
body with attributes that carry the trace onward. A publish that is not confirmed is a 503,
so the sender retries instead of believing we have it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import Request, Response

from common import metrics, spans, webhook_body
from common.envelope import format_time
from common.errors import (
    NotFound,
    Problem,
    PublishError,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from common.headers import HeaderLookup
from common.http import (
    json_response,
    path_parts,
    problem_response,
    read_body,
    require_method,
    secure,
)
from common.logging import add_context, bind_context, get_logger
from common.messaging.publisher import Publisher
from common.secrets import SecretStore, values_or_unavailable
from common.signatures import HmacOptions, SignedRequest, Verifier, verifier_for
from common.storable import text_problem
from common.topology import HEADER_PREFIX, Source, Topology
from common.tracing import new_trace, parse_trace
from common.webhook_body import first_present, lookup, parse_body
from functions.handshakes import HANDSHAKES

log = get_logger(__name__)

PREFIX = "/webhooks"
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


MAX_ATTRIBUTE_VALUE_BYTES = 1024
"""Pub/Sub's limit on an attribute value."""


def kept_headers(source: Source, headers: HeaderLookup) -> dict[str, str]:
    """The sender headers the event log keeps, as attributes. A value over Pub/Sub's limit is
    cut on a character boundary; one PostgreSQL could not store is left out."""
    kept = {}
    for name in source.kept_headers:
        value = headers.get(name)
        if not value or text_problem(value) is not None:
            continue
        raw = value.encode("utf-8")
        if len(raw) > MAX_ATTRIBUTE_VALUE_BYTES:
            value = raw[:MAX_ATTRIBUTE_VALUE_BYTES].decode("utf-8", errors="ignore")
        kept[HEADER_PREFIX + name] = value
    return kept


@dataclass
class WebhookIngest:
    topology: Topology
    secrets: SecretStore
    publisher: Publisher
    project: str = "local-project"
    clock: Callable[[], float] = time.time
    _verifiers: dict[str, Verifier] = field(default_factory=dict)
    _sources: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self._sources = frozenset(source.name for source in self.topology.sources)

    def verifier(self, source: Source) -> Verifier:
        verifier = self._verifiers.get(source.name)
        if verifier is None:
            options = HmacOptions(**source.hmac.model_dump()) if source.hmac else None
            verifier = verifier_for(source.scheme, tolerance_s=source.tolerance_s, hmac=options)
            self._verifiers[source.name] = verifier
        return verifier

    def handle(self, request: Request) -> Response:
        parts = path_parts(request, PREFIX)
        label = metrics.bounded_name(parts[0] if len(parts) == 1 else None, self._sources)
        metrics.webhook_received(label)
        with spans.span(
            f"webhook {label}", parse_trace(request.headers), "server", {"hookyard.source": label}
        ) as context:
            trace = context or new_trace()
            bind_context(trace, self.project, source=parts[0] if parts else None)
            try:
                return self._accept(request, parts, trace.traceparent)
            except Problem as problem:
                metrics.webhook_rejected(label, problem.slug)
                spans.set_attribute("http.response.status_code", problem.status)
                level = "warning" if problem.status < 500 else "error"
                getattr(log, level)(
                    "webhook rejected", status=problem.status, reason=problem.detail
                )
                return problem_response(problem, request.path)

    def _accept(self, request: Request, parts: list[str], traceparent: str) -> Response:
        if len(parts) != 1:
            raise NotFound("no such webhook endpoint")
        source = self.topology.source(parts[0])
        if source is None:
            raise NotFound(f"unknown webhook source {parts[0]!r}")
        require_method(request, "POST")
        body = read_body(request, source.max_body_bytes)
        media_type = request.mimetype
        if media_type not in source.content_types:
            raise UnsupportedMediaType(
                f"Content-Type must be one of {', '.join(source.content_types)}",
                field="Content-Type",
            )
        signed = SignedRequest(
            headers=list(request.headers.items()),
            body=body,
            url=source.public_url or request.url,
            content_type=request.content_type,
        )
        secrets = values_or_unavailable(self.secrets, source.secret)
        self.verifier(source).verify(signed, secrets, int(self.clock()))
        parsed = parse_body(body, media_type)
        handshake = HANDSHAKES.get(source.scheme)
        if handshake is not None and (answer := handshake(parsed)) is not None:
            log.info("sender handshake answered")
            return answer
        headers = request.headers
        event_id = webhook_body.event_id(
            source.event_id, source.event_id_qualifiers, headers, parsed
        )
        event_type = first_present(source.event_type, headers, parsed)
        attributes = {
            "source": source.name,
            "event_id": event_id,
            "received_at": format_time(datetime.fromtimestamp(self.clock(), UTC)),
            "traceparent": traceparent,
            "content_type": media_type,
        }
        if event_type:
            attributes["event_type"] = event_type
        attributes.update(kept_headers(source, headers))
        ordering_key = ""
        if source.ordering_key is not None:
            ordering_key = lookup(source.ordering_key, headers, parsed) or ""
        add_context(event_id=event_id, event_type=event_type)
        try:
            message_id = self.publisher.publish(source.topic, body, attributes, ordering_key)
        except PublishError as exc:
            log.error("publish failed", error=str(exc))
            raise ServiceUnavailable("the event could not be queued; retry later") from exc
        metrics.webhook_accepted(source.name)
        log.info("webhook accepted", message_id=message_id, body_bytes=len(body))
        if source.response == "twiml":
            return secure(Response(TWIML_EMPTY, status=202, mimetype="text/xml"))
        return json_response(
            {"status": "accepted", "source": source.name, "event_id": event_id}, status=202
        )
