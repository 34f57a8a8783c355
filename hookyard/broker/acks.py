"""Acks settled in batches, so that under load an ack costs a fraction of a transaction.

A push thread hands its ack over and frees its push slot at once. One flusher thread settles
every ack pending at that moment in one statement, then takes whatever arrived meanwhile:
when idle an ack is flushed as soon as it arrives, under load acks gather while the previous
flush runs, so batches grow with the load and no timer adds latency. A batch holds at most
`max_batch` acks; while that many wait, `add` waits too, and the push slot it holds keeps the
dispatcher from claiming more than the database can settle.

An ack waiting here is not stored yet: its delivery stays inflight, so the next message of its
ordering key is not claimed before the flush, after which `on_settled` wakes the dispatcher.
`close` flushes whatever is pending, so a clean stop loses no ack. A crash loses the pending
acks: their messages are pushed again once their leases run out, which is Pub/Sub's
at-least-once contract and what every subscriber already handles.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from sqlalchemy.engine import Connection, Engine

from common.db.engine import single_statement
from common.logging import get_logger
from hookyard.broker.settle import Ack, Outcome
from hookyard.broker.store import Delivery

log = get_logger(__name__)

Settle = Callable[[Connection, Sequence[Ack]], Sequence[Outcome]]
Settled = Callable[[Sequence[Ack], Sequence[Outcome]], None]

# Bounds against a flusher that never comes back; a flush itself ends within the engine's
# statement timeout.
_FULL_WAIT_S = 60.0
_CLOSE_WAIT_S = 60.0
_IDLE_WAIT_S = 5.0


class AckBatcher:
    def __init__(
        self, engine: Engine, settle: Settle, on_settled: Settled, *, max_batch: int
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._engine = engine
        self._settle = settle
        self._on_settled = on_settled
        self._max_batch = max_batch
        self._pending: list[Ack] = []
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="broker-acks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, delivery: Delivery, status: int) -> None:
        """Queues the ack of `delivery`'s claim; once closed, settles it on the caller's thread."""
        ack = Ack(delivery, status)
        with self._cond:
            if not self._closed:
                self._cond.wait_for(
                    lambda: self._closed or len(self._pending) < self._max_batch, _FULL_WAIT_S
                )
            if not self._closed:
                self._pending.append(ack)
                self._cond.notify_all()
                return
        self._flush([ack])

    def close(self) -> None:
        """Returns once every ack added before it is settled (or its flush failed)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(_CLOSE_WAIT_S)
        while batch := self._take():
            self._flush(batch)  # never started, or stuck: what is left is settled here

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait(_IDLE_WAIT_S)
            batch = self._take()
            if not batch:
                return
            self._flush(batch)

    def _take(self) -> list[Ack]:
        with self._cond:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            self._cond.notify_all()
        return batch

    def _flush(self, batch: Sequence[Ack]) -> None:
        try:
            with single_statement(self._engine) as conn:  # `Settler.acks` is one statement
                outcomes = self._settle(conn, batch)
        except Exception:
            # Their leases will run out and count as failed attempts, as for any lost result.
            log.exception("broker could not settle acks", acks=len(batch))
            return
        try:
            self._on_settled(batch, outcomes)
        except Exception:
            log.exception("broker could not report settled acks", acks=len(batch))
