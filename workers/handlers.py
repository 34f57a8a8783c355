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
from common.topology import Handler, Topology
from workers.delivery import NOTHING, Delivered, Handled, refuse_conflict
from workers.event_log import kept_headers, received_at
from workers.plugin import Effects, Event, HandlerFunction, has_own_inbox

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
            return NOTHING
        if has_own_inbox(self.function):
            own = self.function(event, conn) or Effects()
            return Handled(notifications=own.notifications)
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
            return NOTHING
        effects = self.function(event, conn)
        if effects is None:
            return NOTHING
        if not isinstance(effects, Effects):
            raise TypeError(f"handler {self.name} returned {type(effects).__name__}, not Effects")
        ids = outbound_messages.add(conn, self.name, delivered.key, self._messages(effects))
        if effects.rows or ids or effects.ignored:
            inbox.set_outcome(
                conn,
                delivered.key,
                subscription=self.name,
                outcome="ignored" if effects.ignored else "applied",
                effects={"rows": effects.rows, "messages": ids, "ignored": effects.ignored},
            )
        return Handled(notifications=effects.notifications, messages=ids)

    def _messages(self, effects: Effects) -> list[outbound_messages.NewMessage]:
        out = []
        for message in effects.messages:
            if message.topic not in self.topics:
                raise PermanentError(
                    f"handler {self.name} publishes to {message.topic!r}, "
                    "which topology.yaml does not declare"
                )
            out.append(
                outbound_messages.NewMessage(
                    message.topic, message.payload(), message.attributes, message.ordering_key
                )
            )
        return out


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
