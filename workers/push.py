"""`POST /pubsub/{subscription}`: one push delivery, acked or nacked by status code.

2xx acks. A `PermanentError` is recorded in `dead_letters` and then acked, so the broker
stops retrying something that can never succeed. Anything else is a nack (503) and the
broker redelivers with backoff, up to the subscription's dead-letter policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from flask import Request, Response
from sqlalchemy.engine import Connection, Engine

from common import metrics, spans
from common.db import dead_letters, delivery_failures
from common.db.delivery_failures import failure_key
from common.db.sqlstate import as_permanent
from common.envelope import MAX_PUSH_BYTES, PushEnvelope, parse_envelope
from common.errors import NotFound, PermanentError, Problem, ServiceUnavailable
from common.http import (
    empty_response,
    path_parts,
    problem_response,
    read_body,
    reject_cross_site,
    require_json_body,
    require_method,
)
from common.logging import bind_context, get_logger
from common.oidc import CallerVerifier, NoCallers
from common.tracing import TRACEPARENT, parse_trace
from workers.dead_letter_sink import store_forwarded
from workers.delivery import Delivered, Handled
from workers.event_log import record_event
from workers.handlers import load_handlers

if TYPE_CHECKING:
    from common.message_relay import MessageRelay
    from common.outbox_relay import OutboxRelay
    from common.topology import Topology

log = get_logger(__name__)

PREFIX = "/pubsub"

EnvelopeHook = Callable[[PushEnvelope], None]
PushOutcome = Literal["ack", "dead_letter"]
Route = Callable[[Connection, Delivered], Handled]
"""Applies a delivery in the caller's transaction; says what to announce after commit."""
EVENT_LOG = "event-log"
DEAD_LETTERS = "dead-letters"


def unserved_subscriptions(topology: Topology, routes: Mapping[str, Route]) -> list[str]:
    """Subscriptions whose push path reaches none of the worker's routes: Pub/Sub would get a
    404 for each delivery until the message dead-letters. tests/infra checks the shipped
    topology has none (a subscription added to topology.yaml needs its handler)."""
    served = {f"{PREFIX}/{name}" for name in (*routes, DEAD_LETTERS)}
    return [s.name for s in topology.subscriptions if s.push_path not in served]


def routes_for(topology: Topology | None = None) -> dict[str, Route]:
    """The event log's route and one per handler the topology (default: the shipped one)
    declares."""
    from common.topology import get_topology

    return {**load_handlers(topology or get_topology()), EVENT_LOG: record_event}


@dataclass
class Worker:
    """Routes deliveries by subscription: the event log, and one route per handler that
    topology.yaml declares. `before_handle` is a fault-injection hook for tests. Without a
    `verifier`, every push over HTTP is refused."""

    engine: Engine
    project: str = "local-project"
    routes: dict[str, Route] = field(default_factory=routes_for)
    before_handle: EnvelopeHook | None = None
    relay: OutboxRelay | None = None
    messages: MessageRelay | None = None
    verifier: CallerVerifier = field(default_factory=NoCallers)

    def handle(self, request: Request) -> Response:
        parts = path_parts(request, PREFIX)
        try:
            reject_cross_site(request)
            self.verifier.verify(request)
            require_json_body(request)
            require_method(request, "POST")
            if len(parts) != 1:
                raise NotFound("no such push endpoint")
            envelope = parse_envelope(read_body(request, MAX_PUSH_BYTES))
        except Problem as problem:
            metrics.push_attempt(self._label(parts), "rejected")
            return problem_response(problem, request.path)
        subscription, label = parts[0], self._label(parts)
        attrs = envelope.message.attributes
        outcome = "nack"
        with spans.span(f"push {label}", parse_trace(attrs), "consumer") as trace:
            bind_context(
                trace,
                self.project,
                subscription=subscription,
                message_id=envelope.message.message_id,
                source=attrs.get("source"),
                event_id=attrs.get("event_id"),
                delivery_attempt=envelope.delivery_attempt,
            )
            try:
                outcome = self.deliver(subscription, envelope)
            except Problem as problem:
                outcome = "rejected" if problem.status < 500 else "nack"
                return problem_response(problem, request.path)
            finally:
                spans.set_attribute("hookyard.outcome", outcome)
                metrics.push_attempt(
                    label, outcome, envelope.delivery_attempt, envelope.message.publish_time
                )
        return empty_response(204)

    def _label(self, parts: list[str]) -> str:
        """A subscription this worker serves, else `unknown` (the path is the caller's)."""
        return metrics.bounded_name(parts[0] if len(parts) == 1 else None, self._served)

    @property
    def _served(self) -> set[str]:
        return {*self.routes, DEAD_LETTERS}

    def deliver(self, subscription: str, envelope: PushEnvelope) -> PushOutcome:
        """Acks (`ack`, or `dead_letter` once stored) or raises: a 503 nack, or a 404."""
        if subscription == DEAD_LETTERS:
            with self.engine.begin() as conn:
                store_forwarded(conn, envelope)
            return "ack"
        handler = self.routes.get(subscription)
        if handler is None:
            raise NotFound(f"no handler for subscription {subscription!r}")
        try:
            if self.before_handle is not None:
                self.before_handle(envelope)
            self._apply(subscription, envelope, handler)
        except PermanentError as exc:
            self._dead_letter(subscription, envelope, exc)
            return "dead_letter"
        except Exception as exc:
            if (permanent := as_permanent(exc)) is not None:
                self._dead_letter(subscription, envelope, permanent)
                return "dead_letter"
            metrics.handler_outcome(subscription, "failed")
            log.warning(
                "delivery failed; the broker will retry",
                error_class=type(exc).__name__,
                error=str(exc)[:500],
            )
            self._note_failure(subscription, envelope, exc)
            raise ServiceUnavailable("delivery failed; retry later") from exc
        return "ack"

    def _note_failure(self, subscription: str, envelope: PushEnvelope, exc: Exception) -> None:
        """Best effort: the reason shows in the dead letter if the broker gives up."""
        try:
            with self.engine.begin() as conn:
                delivery_failures.note(
                    conn, subscription, failure_key(envelope.message.attributes,
                                                    envelope.message.message_id),
                    type(exc).__name__, str(exc),
                )  # fmt: skip
        except Exception:
            log.exception("could not record the delivery failure")

    def _apply(self, subscription: str, envelope: PushEnvelope, handler: Route) -> None:
        delivered = Delivered.of(subscription, envelope.message)
        with spans.span(f"handler {subscription}") as trace:
            with self.engine.begin() as conn:
                handled = handler(conn, delivered)
            spans.set_attribute("hookyard.outcome", handled.outcome)
        metrics.handler_outcome(subscription, handled.outcome)
        # What it announces continues from the handler's span (the message's own without one).
        traceparent = (
            trace.traceparent if trace is not None else envelope.message.attributes.get(TRACEPARENT)
        )
        if handled.notifications and self.relay is not None:
            self.relay.relay(handled.notifications, traceparent)
        if handled.messages and self.messages is not None:
            self.messages.relay(handled.messages, traceparent)

    def _dead_letter(self, subscription: str, envelope: PushEnvelope, exc: PermanentError) -> None:
        with self.engine.begin() as conn:
            dead_letter_id = dead_letters.record(
                conn,
                origin="worker",
                subscription=subscription,
                message_id=envelope.message.message_id,
                data=envelope.message.data,
                attributes=envelope.message.attributes,
                delivery_count=envelope.delivery_attempt or 1,
                error_class=type(exc).__name__,
                error_message=exc.reason,
            )
        metrics.handler_outcome(subscription, "dead_letter")
        log.warning("dead-lettered", reason=exc.reason, dead_letter_id=dead_letter_id)
