"""Publishes handlers' outbound messages after their transaction commits.

At least once: a crash between publish and marking publishes the row again on the next
sweep, so consumers dedupe by the `outbound_id` attribute every message carries (the row's
id, stable across republishes).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Engine

from common.db import outbound_messages
from common.errors import PublishError
from common.logging import get_logger
from common.messaging.publisher import Publisher

log = get_logger(__name__)

OUTBOUND_ID = "outbound_id"


class MessageRelay:
    def __init__(self, engine: Engine, publisher: Publisher) -> None:
        self._engine = engine
        self._publisher = publisher

    def relay(self, ids: Sequence[int], traceparent: str | None = None) -> int:
        """Publishes the rows still unpublished; returns how many it published. Never
        raises: the delivery already committed, and what is left is the sweep's."""
        if not ids:
            return 0
        try:
            with self._engine.connect() as conn:
                rows = outbound_messages.pending(conn, ids)
        except Exception as exc:
            log.warning("message relay deferred to the sweep", error_class=type(exc).__name__)
            return 0
        published: dict[int, str] = {}
        for row in rows:
            attributes = {**row.attributes, OUTBOUND_ID: str(row.id)}
            if traceparent:
                attributes.setdefault("traceparent", traceparent)
            try:
                published[row.id] = self._publisher.publish(
                    row.topic, row.data, attributes, row.ordering_key
                )
            except PublishError as exc:
                log.warning("message relay deferred to the sweep", id=row.id, error=str(exc))
                break
        if published:
            try:
                with self._engine.begin() as conn:
                    outbound_messages.mark_published(conn, published)
            except Exception as exc:
                log.warning("messages published but not marked", error_class=type(exc).__name__)
        return len(published)

    def sweep(self, older_than_s: float = 60.0, limit: int = 500) -> int:
        with self._engine.connect() as conn:
            ids = outbound_messages.stale(conn, older_than_s, limit)
        if not ids:
            return 0
        published = self.relay(ids)
        log.info("outbound message sweep", found=len(ids), published=published)
        return published
