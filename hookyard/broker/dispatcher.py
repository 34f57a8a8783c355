"""The push loop: claim due deliveries, POST them over real HTTP, settle the outcome.

One thread owns the loop and claims at most as many deliveries as there are free push slots,
so a claimed delivery never waits in a queue while its lease runs. Pushes run on a bounded
pool sharing one HTTP client. A push that was acked hands its ack to the `AckBatcher` and
frees its slot, and each batch settled wakes the loop; a push that failed settles its own
delivery (retry or dead letter) in its own transaction, then wakes the loop.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

import httpx
from sqlalchemy.engine import Engine

from common.db.engine import single_statement
from common.envelope import build_envelope
from common.logging import get_logger
from common.oidc import TokenProvider
from common.topology import Subscription, Topology
from hookyard.broker import store
from hookyard.broker.acks import AckBatcher
from hookyard.broker.backoff import PushBackoff
from hookyard.broker.settle import Ack, Outcome, PushResult, Settler
from hookyard.broker.store import Delivery
from hookyard.broker.wakeup import Wakeup

log = get_logger(__name__)

# The lease outlives the HTTP timeout so a push that times out is settled by its own broker.
LEASE_MARGIN_S = 5.0
# Due work we could not claim is held by another claimer's open transaction; let it commit.
_CONTENDED_WAIT_S = 0.05
_ERROR_WAIT_S = 1.0
_REAP_BATCH = 100
_REAP_INTERVAL_S = 1.0
# Acks settled by one statement at most: a bound on its size, not a target.
ACK_BATCH = 256
_HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
}


class Dispatcher:
    def __init__(
        self,
        engine: Engine,
        topology: Topology,
        *,
        push_base_url: str,
        project: str,
        max_concurrent_pushes: int,
        http_client: httpx.Client,
        wakeup: Wakeup,
        max_idle_s: float,
        token: TokenProvider | None = None,
        push_backoff: PushBackoff | None = None,
    ) -> None:
        self._engine = engine
        self._token = token
        self._base_url = push_base_url.rstrip("/")
        self._project = project
        self._http = http_client
        self._wakeup = wakeup
        self._max_idle_s = max_idle_s
        self._settler = Settler(topology, project, push_backoff)
        self._acks = AckBatcher(engine, self._settler.acks, self._acks_settled, max_batch=ACK_BATCH)
        self._subscriptions = {sub.name: sub for sub in topology.subscriptions}
        self._lease_s = {
            sub.name: sub.ack_deadline_seconds + LEASE_MARGIN_S for sub in topology.subscriptions
        }
        self._capacity = max_concurrent_pushes
        self._pool = ThreadPoolExecutor(max_concurrent_pushes, thread_name_prefix="broker-push")
        self._lock = threading.Lock()
        self._running: dict[Future[None], Delivery] = {}
        self._stopping = threading.Event()
        self._reaped_at = -_REAP_INTERVAL_S
        self._thread = threading.Thread(target=self._run, name="broker-dispatcher", daemon=True)

    def start(self) -> None:
        self._acks.start()
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Claims nothing more; pushes already on the wire get until `timeout` to finish.
        Then every ack handed over is settled before this returns; a push answered later
        settles its own."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wakeup.set()
        if self._thread.is_alive():
            self._thread.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            running = dict(self._running)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for future, delivery in running.items():
            if future.cancelled():
                self._release(delivery)
        wait_futures(running, timeout=max(deadline - time.monotonic(), 0.0))
        self._acks.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                idle_s = self._dispatch_due()
            except Exception:
                log.exception("broker dispatch cycle failed")
                idle_s = _ERROR_WAIT_S
            if self._stopping.is_set():
                break
            try:
                self._wakeup.wait(idle_s)
            except Exception:
                log.exception("broker wake-up failed")
                self._stopping.wait(_ERROR_WAIT_S)

    def _dispatch_due(self) -> float:
        """Returns how long nothing can become due without something waking us."""
        names = list(self._subscriptions)
        now = time.monotonic()
        if now - self._reaped_at >= _REAP_INTERVAL_S:
            # A lease outlives its ack deadline (10 s at least), so looking once a second is
            # prompt enough, and a busy loop does not pay a transaction per push for it.
            self._reaped_at = now
            with self._engine.begin() as conn:
                for delivery in store.expired_leases(conn, names, _REAP_BATCH):
                    outcome = self._settler.failure(conn, delivery, None, "lease expired")
                    self._log_outcome(delivery, outcome, status=None, error="lease expired")
        with self._lock:
            free = self._capacity - len(self._running)
        if free <= 0:
            return self._max_idle_s
        with single_statement(self._engine) as conn:
            claimed = store.claim(conn, self._lease_s, free)
        for delivery in claimed:
            self._submit(delivery)
        if len(claimed) == free:
            return self._max_idle_s
        with single_statement(self._engine) as conn:
            due_in = store.seconds_until_due(conn, names)
        if due_in is None:
            return self._max_idle_s
        return min(max(due_in, _CONTENDED_WAIT_S), self._max_idle_s)

    def _submit(self, delivery: Delivery) -> None:
        try:
            with self._lock:
                future = self._pool.submit(self._deliver, delivery)
                self._running[future] = delivery
        except RuntimeError:  # the pool shut down under us
            self._release(delivery)
            return
        future.add_done_callback(self._finished)

    def _finished(self, future: Future[None]) -> None:
        with self._lock:
            self._running.pop(future, None)
        self._wakeup.set()

    def _deliver(self, delivery: Delivery) -> None:
        subscription = self._subscriptions[delivery.subscription]
        try:
            result = self._push(subscription, delivery)
            if result.acked and result.status is not None:
                self._acks.add(delivery, result.status)
                return
            error = result.error or f"HTTP {result.status}"
            with self._engine.begin() as conn:
                outcome = self._settler.failure(conn, delivery, result.status, error)
            self._log_outcome(delivery, outcome, status=result.status, error=result.error)
        except Exception:
            # The lease will run out and count this as a failed attempt.
            log.exception(
                "broker could not settle a push",
                subscription=delivery.subscription,
                message_id=str(delivery.message_id),
            )

    def _acks_settled(self, acks: Sequence[Ack], outcomes: Sequence[Outcome]) -> None:
        for ack, outcome in zip(acks, outcomes, strict=True):
            self._log_outcome(ack.delivery, outcome, status=ack.status, error=None)
        self._wakeup.set()  # their ordering keys are free now

    def _push(self, subscription: Subscription, delivery: Delivery) -> PushResult:
        with_attempt = subscription.dead_letter_policy is not None
        envelope = build_envelope(
            project=self._project,
            subscription=subscription.name,
            message_id=str(delivery.message_id),
            data=delivery.data,
            attributes=delivery.attributes,
            publish_time=delivery.publish_time,
            ordering_key=delivery.ordering_key,
            delivery_attempt=delivery.attempts + 1 if with_attempt else None,
        )
        headers = dict(_HEADERS)
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token()}"
        try:
            response = self._http.post(
                self._base_url + subscription.push_path,
                content=json.dumps(envelope).encode("utf-8"),
                headers=headers,
                timeout=float(subscription.ack_deadline_seconds),
            )
        except httpx.TimeoutException:
            return PushResult(None, "timeout")
        except httpx.HTTPError as exc:
            return PushResult(None, type(exc).__name__)
        return PushResult(response.status_code)

    def _release(self, delivery: Delivery) -> None:
        try:
            with self._engine.begin() as conn:
                store.release(conn, delivery)
        except Exception:
            log.exception("broker could not release a claim", subscription=delivery.subscription)

    def _log_outcome(
        self, delivery: Delivery, outcome: Outcome, *, status: int | None, error: str | None
    ) -> None:
        fields = {
            "subscription": delivery.subscription,
            "message_id": str(delivery.message_id),
            "delivery_attempt": delivery.attempts + 1,
            "status": status,
            "error": error,
            "outcome": outcome,
        }
        if outcome == "dead-lettered":
            log.warning("pubsub push dead-lettered", **fields)
        elif outcome == "acked":
            log.debug("pubsub push acked", **fields)
        else:
            log.info("pubsub push not acked", **fields)
