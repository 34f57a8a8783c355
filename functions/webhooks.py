"""`POST /webhooks/{source}`: verify, validate, publish, and only then answer 202.

This function never touches the database: it reads the raw body once (bounded), verifies
the signature over those exact bytes, extracts the event id and type, and publishes the raw
body with attributes that carry the trace onward. A publish that is not confirmed is a 503,
so the sender retries instead of believing we have it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from flask import Request, Response

from common.config import get_settings
from common.envelope import format_time
from common.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    Problem,
    PublishError,
    ServiceUnavailable,
    SignatureInvalid,
)
from common.http import json_response, path_parts, problem_response, require_method
from common.json_pointer import resolve
from common.logging import add_context, bind_context, get_logger
from common.messaging.publisher import Publisher, get_publisher
from common.secrets import SecretStore, get_secret_store
from common.signatures import SignedRequest, Verifier, verifier_for
from common.topology import FieldRef, Source, Topology, get_topology
from common.tracing import new_trace, parse_trace

log = get_logger(__name__)

MAX_ID_LENGTH = 256
PREFIX = "/webhooks"


@dataclass
class WebhookIngest:
    topology: Topology
    secrets: SecretStore
    publisher: Publisher
    project: str = "local-project"
    clock: Callable[[], float] = time.time
    _verifiers: dict[str, Verifier] = field(default_factory=dict)

    def verifier(self, source: Source) -> Verifier:
        verifier = self._verifiers.get(source.name)
        if verifier is None:
            verifier = verifier_for(source.scheme, tolerance_s=source.tolerance_s)
            self._verifiers[source.name] = verifier
        return verifier

    def handle(self, request: Request) -> Response:
        trace = parse_trace(request.headers) or new_trace()
        parts = path_parts(request, PREFIX)
        bind_context(trace, self.project, source=parts[0] if parts else None)
        try:
            return self._accept(request, parts, trace.traceparent)
        except Problem as problem:
            level = "warning" if problem.status < 500 else "error"
            getattr(log, level)("webhook rejected", status=problem.status, reason=problem.detail)
            return problem_response(problem, request.path)

    def _accept(self, request: Request, parts: list[str], traceparent: str) -> Response:
        if len(parts) != 1:
            raise NotFound("no such webhook endpoint")
        source = self.topology.source(parts[0])
        if source is None:
            raise NotFound(f"unknown webhook source {parts[0]!r}")
        require_method(request, "POST")
        body = read_limited(request, source.max_body_bytes)
        signed = SignedRequest(
            headers=list(request.headers.items()),
            body=body,
            url=request.url,
            content_type=request.content_type,
        )
        self.verifier(source).verify(signed, self.secrets.values(source.secret), int(self.clock()))
        document = parse_json(body)
        event_id = extract(source.event_id, request, document)
        if event_id is None:
            where = source.event_id.describe()
            raise BadRequest(f"missing event id: {where} is absent or empty", field=where)
        event_type = extract(source.event_type, request, document)
        attributes = {
            "source": source.name,
            "event_id": event_id,
            "received_at": format_time(datetime.fromtimestamp(self.clock(), UTC)),
            "traceparent": traceparent,
        }
        if event_type:
            attributes["event_type"] = event_type
        ordering_key = extract(source.ordering_key, request, document) or ""
        add_context(event_id=event_id, event_type=event_type)
        try:
            message_id = self.publisher.publish(source.topic, body, attributes, ordering_key)
        except PublishError as exc:
            log.error("publish failed", error=str(exc))
            raise ServiceUnavailable("the event could not be queued; retry later") from exc
        log.info("webhook accepted", message_id=message_id, body_bytes=len(body))
        return json_response(
            {"status": "accepted", "source": source.name, "event_id": event_id}, status=202
        )


def read_limited(request: Request, limit: int) -> bytes:
    """Refuses by Content-Length before reading; a chunked body is read at most limit+1 bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body exceeds the {limit}-byte limit for this source")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"body exceeds the {limit}-byte limit for this source")
    return body


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("body is not valid JSON") from exc


def extract(ref: FieldRef | None, request: Request, document: Any) -> str | None:
    """The referenced value as a string, or None when absent or empty."""
    if ref is None:
        return None
    value: Any = (
        request.headers.get(ref.header) if ref.header else resolve(document, ref.json_pointer or "")
    )
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    if len(value) > MAX_ID_LENGTH:
        raise BadRequest(
            f"{ref.describe()} is longer than {MAX_ID_LENGTH} characters", field=ref.describe()
        )
    return value


@lru_cache(maxsize=1)
def default_ingest() -> WebhookIngest:
    settings = get_settings()
    return WebhookIngest(
        topology=get_topology(),
        secrets=get_secret_store(),
        publisher=get_publisher(),
        project=settings.gcp_project,
    )


def handle(request: Request) -> Response:
    return default_ingest().handle(request)


__all__ = ["SignatureInvalid", "WebhookIngest", "handle"]
