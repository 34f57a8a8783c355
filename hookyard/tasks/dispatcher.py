"""The task loop: claim due tasks within each queue's limits, POST them, settle the outcome.

It follows the Pub/Sub broker's dispatcher (one loop thread that claims only what it can
start at once, a bounded pool sharing one HTTP client, leases that outlive the HTTP
deadline, the same wake-up) and adds what Cloud Tasks has on top: a token bucket and a
concurrency cap per queue. Both are exact within this process because this loop is the only
place that spends tokens and counts attempts in flight; emulators sharing a database each
enforce them on their own.
"""

from __future__ import annotations

import http
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import httpx
from sqlalchemy.engine import Connection, Engine

from common.logging import get_logger
from common.oidc import TokenProvider
from common.topology import Queue, Topology
from hookyard.broker.dispatcher import LEASE_MARGIN_S
from hookyard.broker.wakeup import Wakeup
from hookyard.tasks import store
from hookyard.tasks.backoff import exhausted, failure_delay
from hookyard.tasks.ratelimit import TokenBucket
from hookyard.tasks.store import ClaimedTask, HttpTarget

log = get_logger(__name__)

USER_AGENT = "Google-Cloud-Tasks"
# Due work we could not claim is held by another claimer's open transaction; let it commit.
_CONTENDED_WAIT_S = 0.05
_ERROR_WAIT_S = 1.0
_REAP_BATCH = 100
_COLLECT_EVERY_S = 60.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Outcome = Literal["succeeded", "retry", "exhausted", "stale"]
Minter = Callable[[str, str], str]
"""(service account email, audience) -> an OIDC token, as a task's `oidc_token` asks."""
# Methods whose request carries the task's body; Cloud Tasks refuses a body on the others.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One attempt's answer; no `status` means no response (timeout, refused, lost lease).

    `reason` becomes the next attempt's `X-CloudTasks-TaskRetryReason`, whose values Google
    does not document: the status's reason phrase, or what kept a response from arriving.
    """

    status: int | None
    reason: str | None = None
    retry_after: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def dispatch_headers(task: ClaimedTask, token: str | None = None) -> dict[str, str]:
    """The task's own headers (reserved names were dropped at create) plus Cloud Tasks'; a
    `token` replaces any Authorization the task carried, as a task's `oidc_token` does."""
    headers = dict(task.headers)
    if token is not None:
        for name in [n for n in headers if n.lower() == "authorization"]:
            del headers[name]
        headers["Authorization"] = f"Bearer {token}"
    headers["User-Agent"] = USER_AGENT
    headers["X-CloudTasks-QueueName"] = task.queue
    headers["X-CloudTasks-TaskName"] = task.name
    headers["X-CloudTasks-TaskRetryCount"] = str(task.attempts)
    headers["X-CloudTasks-TaskExecutionCount"] = str(task.executions)
    headers["X-CloudTasks-TaskETA"] = eta_header(task.schedule_time)
    if task.attempts and task.last_status is not None:
        headers["X-CloudTasks-TaskPreviousResponse"] = str(task.last_status)
    if task.attempts and task.last_error:
        headers["X-CloudTasks-TaskRetryReason"] = task.last_error
    return headers


def eta_header(moment: datetime) -> str:
    """Fractional epoch seconds, exact to the microsecond PostgreSQL keeps (no float)."""
    seconds, micros = divmod((moment - _EPOCH) // timedelta(microseconds=1), 1_000_000)
    return f"{seconds}.{micros:06d}"


def status_reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """How an emulator's dispatcher runs; `TaskEmulator` documents each."""

    push_base_url: str
    max_workers: int
    max_idle_s: float
    tombstone_s: float
    clock: Callable[[], float]
    token: TokenProvider | None = None
    minter: Minter | None = None


class Dispatcher:
    def __init__(
        self,
        engine: Engine,
        topology: Topology,
        settings: DispatchSettings,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._base_url = settings.push_base_url.rstrip("/")
        # The loop owns what it sleeps on and what it sends with; a client passed in stays
        # its owner's to close.
        workers = settings.max_workers
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
        )
        self._wakeup = Wakeup(engine, store.CHANNEL)
        self._queues = {queue.name: queue for queue in topology.queues}
        self._buckets = {
            queue.name: TokenBucket(
                queue.rate_limits.max_dispatches_per_second,
                queue.rate_limits.burst,
                settings.clock,
            )
            for queue in topology.queues
        }
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="tasks-dispatch")
        self._lock = threading.Lock()
        self._running: dict[Future[None], ClaimedTask] = {}
        self._inflight: Counter[str] = Counter()
        self._turn = 0
        self._reap_at = 0.0  # monotonic; 0 reaps at once, for leases a dead emulator left
        self._collect_at = 0.0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tasks-dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Callable from any thread: something may have become due (a create, a resume)."""
        self._wakeup.set()

    def stop(self, timeout: float) -> None:
        """Claims nothing more; attempts already on the wire get until `timeout` to finish.
        Claims the pool had not started are cancelled, and `_finished` gives them back."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wakeup.set()
        if self._thread.is_alive():
            self._thread.join(max(deadline - time.monotonic(), 0.0))
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            on_the_wire = list(self._running)
        wait_futures(on_the_wire, timeout=max(deadline - time.monotonic(), 0.0))
        self._wakeup.close()
        if self._owns_http:
            self._http.close()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                idle_s = self._cycle()
                if not self._stopping.is_set():
                    self._wakeup.wait(idle_s)
            except Exception:
                log.exception("task dispatch cycle failed")
                self._stopping.wait(_ERROR_WAIT_S)

    def _cycle(self) -> float:
        """Claims first, so a token that has just come due is spent without delay; returns
        how long nothing can become due without something waking the loop."""
        self._claim_due()
        now = time.monotonic()
        if now >= self._reap_at:
            self._reap_expired()
        if now >= self._collect_at:
            self._collect_at = now + _COLLECT_EVERY_S
            with self._engine.begin() as conn:
                store.collect_tombstones(conn, self._settings.tombstone_s)
        return self._idle_for()

    def _claim_due(self) -> None:
        """Reserves tokens before touching the database, so the time a claim takes is not
        lost to a full bucket, then claims in one transaction over every queue. Free pool
        slots go to actual claims, starting with a different queue each time, so a queue
        with nothing due never holds them and a full pool does not always favour one queue."""
        names = list(self._queues)
        if not names:
            return
        first = self._turn % len(names)
        self._turn += 1
        with self._lock:
            free = self._settings.max_workers - len(self._running)
            inflight = Counter(self._inflight)
        reserved: dict[str, int] = {}
        for name in names[first:] + names[:first]:
            concurrent = self._queues[name].rate_limits.max_concurrent_dispatches
            taken = self._buckets[name].take(min(free, concurrent - inflight[name]))
            if taken > 0:
                reserved[name] = taken
        claimed: list[ClaimedTask] = []
        try:
            with self._engine.begin() as conn:
                for name, limit in reserved.items():
                    lease_s = _lease_s(self._queues[name])
                    got = store.claim(
                        conn, name, lease_s, min(limit, free - len(claimed)), LEASE_MARGIN_S
                    )
                    claimed.extend(got)
        except Exception:
            claimed = []  # rolled back: nothing was claimed after all
            raise
        finally:
            spent = Counter(task.queue for task in claimed)
            for name, limit in reserved.items():
                self._buckets[name].give_back(limit - spent[name])
        for task in claimed:
            self._submit(task)

    def _reap_expired(self) -> None:
        with self._engine.begin() as conn:
            for task in store.expired_leases(conn, list(self._queues), _REAP_BATCH):
                result = AttemptResult(None, "lease expired")
                outcome = self._fail(conn, self._queues[task.queue], task, result)
                self._log_outcome(task, outcome, result)

    def _idle_for(self) -> float:
        with self._engine.connect() as conn:
            due = store.due_in(conn, list(self._queues))
        with self._lock:
            free = self._settings.max_workers - len(self._running)
            inflight = Counter(self._inflight)
        leases = [d.lease_s for d in due.values() if d.lease_s is not None]
        self._reap_at = time.monotonic() + min(leases) if leases else math.inf
        waits = [self._settings.max_idle_s, *(max(s, _CONTENDED_WAIT_S) for s in leases)]
        for name, d in due.items():
            queue = self._queues[name]
            full = inflight[name] >= queue.rate_limits.max_concurrent_dispatches
            if d.pending_s is None or free <= 0 or full:
                continue  # nothing to send, or an attempt that finishes will wake the loop
            wait = max(d.pending_s, self._buckets[name].seconds_until_available())
            waits.append(wait if wait > 0 else _CONTENDED_WAIT_S)
        return min(waits)

    def _submit(self, task: ClaimedTask) -> None:
        future: Future[None] | None = None
        with self._lock:
            with suppress(RuntimeError):  # the pool shut down under us: given back below
                future = self._pool.submit(self._attempt_and_settle, task)
            if future is not None:
                self._running[future] = task
                self._inflight[task.queue] += 1
        if future is None:
            self._release(task)
        else:
            future.add_done_callback(self._finished)

    def _finished(self, future: Future[None]) -> None:
        with self._lock:
            task = self._running.pop(future)
            self._inflight[task.queue] -= 1
        if future.cancelled():  # never attempted, so it costs the task nothing
            self._release(task)
        self._wakeup.set()

    def _attempt_and_settle(self, task: ClaimedTask) -> None:
        queue = self._queues[task.queue]
        try:
            result = self._attempt(queue, task)
            with self._engine.begin() as conn:
                outcome = self._settle(conn, queue, task, result)
        except Exception:
            # The lease will run out and count this as a failed attempt.
            log.exception("task attempt could not be settled", queue=task.queue, task=task.name)
            return
        self._log_outcome(task, outcome, result)

    def _attempt(self, queue: Queue, task: ClaimedTask) -> AttemptResult:
        """Redirects are followed, as Cloud Tasks does: they are not attempts of their own.

        A task that named its target goes there, with a token only if it asked for one; a
        task that did not goes to its queue's worker path with the emulator's own token."""
        target = task.target
        if target is None:
            url, method = self._base_url + queue.push_path, "POST"
            deadline_s = float(queue.dispatch_deadline_s)
            token = self._settings.token() if self._settings.token is not None else None
        else:
            url, method = target.url, target.http_method
            deadline_s = float(target.dispatch_deadline_s or queue.dispatch_deadline_s)
            token = self._oidc_token(target)
        try:
            response = self._http.request(
                method,
                url,
                content=task.body if method in BODY_METHODS else None,
                headers=dispatch_headers(task, token),
                timeout=deadline_s,
                follow_redirects=True,
            )
        except httpx.TimeoutException:
            return AttemptResult(None, "timeout")
        except httpx.HTTPError as exc:
            return AttemptResult(None, f"no response: {type(exc).__name__}")
        status = response.status_code
        return AttemptResult(status, status_reason(status), response.headers.get("Retry-After"))

    def _oidc_token(self, target: HttpTarget) -> str | None:
        """Audience defaults to the task's URL, as Cloud Tasks defaults it."""
        if target.oidc_email is None:
            return None
        if self._settings.minter is None:
            raise RuntimeError("this emulator mints no OIDC tokens")
        return self._settings.minter(target.oidc_email, target.oidc_audience or target.url)

    def _settle(
        self, conn: Connection, queue: Queue, task: ClaimedTask, result: AttemptResult
    ) -> Outcome:
        if result.succeeded:
            if store.mark_deleted(conn, task, "succeeded", result.status, None):
                return "succeeded"
            return "stale"
        return self._fail(conn, queue, task, result)

    def _fail(
        self, conn: Connection, queue: Queue, task: ClaimedTask, result: AttemptResult
    ) -> Outcome:
        since_first_attempt_s = store.lock_claim(conn, task)
        if since_first_attempt_s is None:
            return "stale"
        attempts = task.attempts + 1
        if exhausted(queue.retry_config, attempts, since_first_attempt_s):
            store.mark_deleted(conn, task, "exhausted", result.status, result.reason)
            return "exhausted"
        delay_s = failure_delay(
            queue.retry_config, attempts, result.status, result.retry_after, datetime.now(UTC)
        )
        store.mark_retry(conn, task, delay_s, result.status, result.reason)
        return "retry"

    def _release(self, task: ClaimedTask) -> None:
        try:
            with self._engine.begin() as conn:
                store.release(conn, task)
        except Exception:
            log.exception("task claim could not be given back", queue=task.queue, task=task.name)

    def _log_outcome(self, task: ClaimedTask, outcome: Outcome, result: AttemptResult) -> None:
        fields = {
            "queue": task.queue,
            "task": task.name,
            "retry_count": task.attempts,
            "status": result.status,
            "reason": None if result.succeeded else result.reason,
            "outcome": outcome,
        }
        if outcome == "exhausted":
            log.warning("task exhausted", **fields)
        elif outcome == "succeeded":
            log.debug("task succeeded", **fields)
        elif outcome == "stale":  # purged, or its lease ran out and another claimer took over
            log.info("task attempt outcome discarded", **fields)
        else:
            log.info("task attempt failed", **fields)


def _lease_s(queue: Queue) -> float:
    """Outlives the HTTP deadline, so an attempt that times out is settled by its own loop."""
    return queue.dispatch_deadline_s + LEASE_MARGIN_S
