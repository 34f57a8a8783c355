"""Moves outbox rows onto the `notifications` queue as named tasks.

The task name derives from the outbox id, so enqueuing the same row twice (the relay after
commit and the sweeper racing it, or a relay retried after a crash) is ALREADY_EXISTS,
which counts as success: a row is announced at most once per tombstone window, and the
task handler's own check on the row's state covers the rest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy.engine import Engine

from common.db import outbox
from common.errors import PublishError
from common.logging import get_logger
from common.messaging.tasks import TaskQueue, TaskRequest

log = get_logger(__name__)

NOTIFICATIONS_QUEUE = "notifications"


def task_name(outbox_id: int) -> str:
    return f"outbox-{outbox_id}"


class OutboxRelay:
    def __init__(self, engine: Engine, tasks: TaskQueue, queue: str = NOTIFICATIONS_QUEUE) -> None:
        self._engine = engine
        self._tasks = tasks
        self._queue = queue

    def relay(self, ids: Sequence[int], traceparent: str | None = None) -> int:
        """Enqueues each row; returns how many are now on the queue. Never raises: it runs
        after the delivery committed, and a 503 then would only make the broker redeliver a
        delivery that is already applied, which announces nothing. Rows left behind are the
        sweeper's."""
        headers = {"Content-Type": "application/json"}
        if traceparent:
            headers["traceparent"] = traceparent
        done: list[int] = []
        for outbox_id in ids:
            request = TaskRequest(
                queue=self._queue,
                name=task_name(outbox_id),
                body=json.dumps({"outbox_id": outbox_id}).encode(),
                headers=headers,
            )
            try:
                self._tasks.enqueue(request)
            except PublishError as exc:
                log.warning(
                    "outbox relay deferred to the sweeper", outbox_id=outbox_id, error=str(exc)
                )
                break
            except Exception as exc:  # a queue adapter that broke its contract: still deferred
                log.error(
                    "outbox relay deferred to the sweeper",
                    outbox_id=outbox_id,
                    error_class=type(exc).__name__,
                )
                break
            done.append(outbox_id)
        if done:
            try:
                with self._engine.begin() as conn:
                    outbox.mark_enqueued(conn, done)
            except Exception as exc:
                # Enqueued but not marked: the sweeper's second enqueue is ALREADY_EXISTS.
                log.warning("outbox rows enqueued but not marked", error_class=type(exc).__name__)
                return 0
        return len(done)

    def sweep(self, older_than_s: float = 60.0, limit: int = 500) -> int:
        """Relays rows that committed but were never enqueued (the relay's process died)."""
        with self._engine.connect() as conn:
            ids = outbox.unenqueued(conn, older_than_s, limit)
        if not ids:
            return 0
        relayed = self.relay(ids)
        log.info("outbox sweep", found=len(ids), relayed=relayed)
        return relayed
