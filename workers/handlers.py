"""Runs the handlers `topology.yaml` declares: one subscription, one inbox key, one dead
letter per handler, so several handlers take one event without touching each other.

The runner claims the event in the inbox under the handler's name, calls the handler in the
same transaction, writes the messages it asks for to the outbox, and records what it did.
A duplicate (same id, same body) is acknowledged without calling the handler again.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import cast

from sqlalchemy.engine import Connection

from common.db import inbox, outbound_messages
from common.errors import ConfigError, PermanentError
from common.logging import get_logger
from common.storable import text_problem
from common.topology import Handler, Topology
from workers.delivery import DUPLICATE, SKIPPED, Delivered, Handled, refuse_conflict
from workers.event_log import kept_headers, received_at
from workers.plugin import Effects, Event, HandlerFunction, Message, has_own_inbox

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedHandler:
    spec: Handler
    function: HandlerFunction
    topics: frozenset[str]
    """Where its messages may go: the topology's topics."""

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, conn: Connection, delivered: Delivered) -> Handled:
        event = as_event(delivered, self.name)
        if not self.spec.takes(event.source, event.type):
            # Not its event: the filter keeps these away in Pub/Sub, but a filter too long for
            # Pub/Sub names sources only, and Google's emulator applies no filter at all.
            log.info("not this handler's event; acknowledged", handler=self.name)
            return SKIPPED
        if has_own_inbox(self.function):
            own = self._checked(self.function(event, conn))
            ids = outbound_messages.add(conn, self.name, delivered.key, self._messages(own))
            return Handled(own.notifications, ids, "ignored" if own.ignored else "applied")
        claim = inbox.claim(
            conn,
            delivered.key,
            event_type=delivered.event_type,
            subscription=self.name,
            message_id=delivered.message.message_id,
            body_sha256=delivered.body_sha256,
        )
        if not refuse_conflict(claim):
            log.info("duplicate delivery acknowledged without effect", handler=self.name)
            return DUPLICATE
        effects = self._checked(self.function(event, conn))
        ids = outbound_messages.add(conn, self.name, delivered.key, self._messages(effects))
        if effects.rows or ids or effects.ignored:
            inbox.set_outcome(
                conn,
                delivered.key,
                subscription=self.name,
                outcome="ignored" if effects.ignored else "applied",
                effects={"rows": effects.rows, "messages": ids, "ignored": effects.ignored},
            )
        return Handled(effects.notifications, ids, "ignored" if effects.ignored else "applied")

    def _checked(self, effects: object) -> Effects:
        """A handler returning something else is a bug no retry fixes: a dead letter."""
        if effects is None:
            return Effects()
        if not isinstance(effects, Effects):
            raise PermanentError(
                f"handler {self.name} returned {type(effects).__name__}, not Effects"
            )
        return effects

    def _messages(self, effects: Effects) -> list[outbound_messages.NewMessage]:
        """Refuses here, as a dead letter naming the handler, what Pub/Sub would refuse at
        publish time, after commit, where nothing could undo the effects."""
        out = []
        for message in effects.messages:
            if message.topic not in self.topics:
                raise PermanentError(
                    f"handler {self.name} publishes to {message.topic!r}, "
                    "which topology.yaml does not declare"
                )
            if (problem := message_problem(message)) is not None:
                raise PermanentError(f"handler {self.name}: message to {message.topic}: {problem}")
            out.append(
                outbound_messages.NewMessage(
                    message.topic, message.payload(), message.attributes, message.ordering_key
                )
            )
        return out


MAX_MESSAGE_BYTES = 10_000_000
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 1024
MAX_ORDERING_KEY_BYTES = 1024


def message_problem(message: Message) -> str | None:
    """Why Pub/Sub would refuse this message (its documented limits), or None."""
    try:
        data = message.payload()
    except (TypeError, ValueError) as exc:
        return f"data is not JSON-serialisable: {type(exc).__name__}"
    if len(data) > MAX_MESSAGE_BYTES:
        return f"data is over {MAX_MESSAGE_BYTES} bytes"
    if len(message.attributes) > MAX_ATTRIBUTES:
        return f"more than {MAX_ATTRIBUTES} attributes"
    for key, value in message.attributes.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return "attribute keys and values must be strings"
        if text_problem(key) or text_problem(value):
            return "attribute keys and values must be storable text"
        if not key or key.startswith("goog") or len(key.encode()) > MAX_ATTRIBUTE_KEY_BYTES:
            return f"attribute key {key[:40]!r} is empty, too long or starts with goog"
        if len(value.encode()) > MAX_ATTRIBUTE_VALUE_BYTES:
            return f"attribute {key[:40]!r} is over {MAX_ATTRIBUTE_VALUE_BYTES} bytes"
    ordering = message.ordering_key
    if text_problem(ordering) or len(ordering.encode()) > MAX_ORDERING_KEY_BYTES:
        return f"ordering key is over {MAX_ORDERING_KEY_BYTES} bytes"
    return None


def as_event(delivered: Delivered, handler: str) -> Event:
    attributes = delivered.message.attributes
    return Event(
        source=delivered.key.source,
        id=delivered.key.event_id,
        type=delivered.event_type,
        body=delivered.message.data,
        content_type=attributes.get("content_type"),
        headers=kept_headers(attributes),
        received_at=received_at(attributes.get("received_at"), delivered.message.publish_time),
        handler=handler,
        message_id=delivered.message.message_id,
        body_sha256=delivered.body_sha256,
    )


def load_handlers(topology: Topology) -> dict[str, LoadedHandler]:
    """Imports each declared handler; a module or function that is missing stops the worker
    at start-up, naming it, rather than dead-lettering every event later."""
    topics = frozenset(t.name for t in topology.topics)
    loaded = {}
    for spec in topology.handlers:
        module_name, _, attribute = spec.module.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"handler {spec.name}: cannot import {module_name}: {exc}") from exc
        function = getattr(module, attribute, None)
        if not callable(function):
            raise ConfigError(f"handler {spec.name}: {spec.module} is not a function")
        loaded[spec.name] = LoadedHandler(spec, cast(HandlerFunction, function), topics)
    return loaded
