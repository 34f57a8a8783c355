"""The local stand-in for Cloud Tasks: durable named tasks, attempted over real HTTP.

State lives in PostgreSQL (schema `emulator`, beside the Pub/Sub emulator's), so a created
task is committed, a restart loses nothing, a pause outlives the process that set it, and a
task created in another process wakes the dispatcher through NOTIFY.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from common.errors import BadRequest, NotFound, Problem, PublishError
from common.logging import get_logger
from common.messaging.tasks import TaskRequest, valid_task_id
from common.oidc import TokenProvider
from common.topology import Queue, Topology
from hookyard.tasks import store
from hookyard.tasks.dispatcher import Dispatcher, DispatchSettings, Minter
from hookyard.tasks.store import HttpTarget, NewTask, QueueState, TaskRecord

log = get_logger(__name__)

# Cloud Tasks' documented limits, enforced so local code cannot rely on more.
MAX_TASK_BYTES = 100 * 1024
MAX_HEADER_BYTES = 80 * 1024
MAX_SCHEDULE_AHEAD = timedelta(days=30)
# How long a name stays taken after its task ran or was deleted ("about an hour").
DEFAULT_TOMBSTONE_S = 3600.0
# Set by Cloud Tasks itself or reserved to Google: a task's own value is dropped.
_RESERVED_HEADERS = frozenset({"user-agent", "host", "content-length", "transfer-encoding"})
_RESERVED_PREFIXES = ("x-google-", "x-appengine-", "x-cloudtasks-")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


class TaskEmulator:
    def __init__(
        self,
        engine: Engine,
        topology: Topology,
        push_base_url: str,
        *,
        project: str = "local-project",
        location: str = "us-central1",
        http_client: httpx.Client | None = None,
        max_idle_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        tombstone_s: float = DEFAULT_TOMBSTONE_S,
        max_workers: int = 32,
        token: TokenProvider | None = None,
        minter: Minter | None = None,
    ) -> None:
        """`clock` drives the rate limits; `max_workers` bounds attempts in flight across
        all queues; `max_idle_s` caps any one sleep of the dispatcher (a safety net, not
        the wake-up path); `token` is the OIDC token every attempt of a task that named no
        target carries; `minter` signs the tokens tasks ask for in their `oidc_token`."""
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if tombstone_s < 0:
            raise ValueError("tombstone_s must not be negative")
        self.project = project
        self.location = location
        self._engine = engine
        self._topology = topology
        self._http = http_client
        self._settings = DispatchSettings(
            push_base_url=push_base_url.rstrip("/"),
            max_workers=max_workers,
            max_idle_s=max_idle_s,
            tombstone_s=tombstone_s,
            clock=clock,
            token=token,
            minter=minter,
        )
        self._lock = threading.Lock()
        self._installed = False
        self._dispatcher: Dispatcher | None = None
        self._stopped = False

    def install(self) -> None:
        with self._engine.begin() as conn:
            store.install(conn)
        self._installed = True

    def _ensure_installed(self) -> None:
        """Creating and inspecting work without a started dispatcher, as another process
        does when it only enqueues."""
        if not self._installed:
            self.install()

    def queue(self, name: str) -> Queue:
        queue = self._topology.queue(name)
        if queue is None:
            raise NotFound(f"queue {name!r} does not exist")
        return queue

    def queues(self) -> list[Queue]:
        return list(self._topology.queues)

    def target_url(self, queue: Queue) -> str:
        """Where every task of `queue` goes: the worker's `POST /tasks/{queue}`."""
        return self._settings.push_base_url + queue.push_path

    def create(self, task: TaskRequest, target: HttpTarget | None = None) -> TaskRecord | None:
        """The task as stored, or None when its name is taken (ALREADY_EXISTS); with no
        `target`, it goes to the queue's worker path.

        Raises `NotFound` for an unknown queue and `BadRequest` for what Cloud Tasks would
        refuse as INVALID_ARGUMENT, so the REST API can answer as Cloud Tasks does.
        """
        queue = self.queue(task.queue)
        name = secrets.token_hex(16) if task.name is None else task.name
        if not valid_task_id(name):
            raise BadRequest("task IDs are 1 to 500 characters of [A-Za-z0-9_-]")
        headers = clean_headers(task.headers)
        size = len(task.body) + sum(len(k) + len(v) for k, v in headers.items())
        if size > MAX_TASK_BYTES:
            raise BadRequest(f"a task is at most {MAX_TASK_BYTES} bytes")
        check_schedule_time(task.schedule_time)
        if target is not None and target.oidc_email is not None and self._settings.minter is None:
            raise BadRequest(
                "this emulator cannot sign OIDC tokens", google_status="FAILED_PRECONDITION"
            )
        self._ensure_installed()
        new = NewTask(queue.name, name, task.body, headers, task.schedule_time, target)
        with self._engine.begin() as conn:
            record = store.create(conn, new, self._settings.tombstone_s)
        if record is None:
            log.debug("task already exists", queue=queue.name, task=name)
            return None
        self._wake()
        log.debug("task created", queue=queue.name, task=name)
        return record

    def create_task(self, task: TaskRequest) -> bool:
        """`TaskQueue.enqueue` in-process: True created, False ALREADY_EXISTS, else
        `PublishError`, whatever the reason, as a remote client would see it."""
        try:
            return self.create(task) is not None
        except Problem as exc:
            raise PublishError(f"task not created: {exc.detail}") from exc
        except SQLAlchemyError as exc:
            raise PublishError(f"task not stored: {type(exc).__name__}") from exc

    enqueue = create_task

    def get_task(self, queue: str, name: str) -> TaskRecord:
        """A live task; `NotFound` once it ran to its end or was deleted."""
        queue_name = self.queue(queue).name
        self._ensure_installed()
        with self._engine.connect() as conn:
            record = store.get(conn, queue_name, name)
        if record is None:
            raise NotFound(f"task {name!r} does not exist")
        return record

    def delete_task(self, queue: str, name: str) -> None:
        """Deletes a live task; its name stays taken for the tombstone window."""
        queue_name = self.queue(queue).name
        self._ensure_installed()
        with self._engine.begin() as conn:
            deleted = store.delete(conn, queue_name, name)
        if not deleted:
            raise NotFound(f"task {name!r} does not exist")
        log.debug("task deleted", queue=queue_name, task=name)

    def list_tasks(self, queue: str, after: str, limit: int) -> list[TaskRecord]:
        """Up to `limit` live tasks by name, after the name `after` ("" from the start)."""
        queue_name = self.queue(queue).name
        self._ensure_installed()
        with self._engine.connect() as conn:
            return store.list_live(conn, queue_name, after, limit)

    def queue_status(self, queue: str) -> tuple[QueueState, datetime | None]:
        """State and last purge time, as `GetQueue` answers them."""
        name = self.queue(queue).name
        self._ensure_installed()
        with self._engine.connect() as conn:
            return store.queue_status(conn, name)

    def pause(self, queue: str) -> None:
        self._set_state(queue, "PAUSED")

    def resume(self, queue: str) -> None:
        self._set_state(queue, "RUNNING")

    def purge(self, queue: str) -> int:
        """Deletes every task created before the call, tombstoning each name; the count."""
        name = self.queue(queue).name
        self._ensure_installed()
        with self._engine.begin() as conn:
            purged = store.purge(conn, name)
        log.info("task queue purged", queue=name, purged=purged)
        return purged

    def queue_state(self, queue: str) -> QueueState:
        name = self.queue(queue).name
        self._ensure_installed()
        with self._engine.connect() as conn:
            return store.queue_state(conn, name)

    def start(self) -> None:
        with self._lock:
            if self._dispatcher is not None or self._stopped:
                raise RuntimeError("a TaskEmulator starts once")
            self.install()
            self._dispatcher = Dispatcher(self._engine, self._topology, self._settings, self._http)
            self._dispatcher.start()
        log.info("task emulator started", push_base_url=self._settings.push_base_url)

    def stop(self, timeout: float = 10) -> None:
        """Idempotent; an emulator that never started has nothing to stop."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            dispatcher = self._dispatcher
        if dispatcher is not None:
            dispatcher.stop(timeout)
            log.info("task emulator stopped")

    def pending_count(self, queue: str | None = None) -> int:
        """Tasks not yet succeeded, exhausted or purged, inflight ones included."""
        self._ensure_installed()
        with self._engine.connect() as conn:
            return store.pending_count(conn, queue)

    def _set_state(self, queue: str, state: QueueState) -> None:
        name = self.queue(queue).name
        self._ensure_installed()
        with self._engine.begin() as conn:
            store.set_queue_state(conn, name, state)
        self._wake()
        log.info("task queue state set", queue=name, state=state)

    def _wake(self) -> None:
        """Our own dispatcher hears at once; others hear the NOTIFY sent on commit."""
        dispatcher = self._dispatcher
        if dispatcher is not None:
            dispatcher.wake()


def clean_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Drops what Cloud Tasks sets or reserves, and refuses what could not be sent."""
    kept: dict[str, str] = {}
    size = 0
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise BadRequest(f"invalid header name {name!r}")
        if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
            raise BadRequest(f"header {name} must be printable ASCII on one line")
        lowered = name.lower()
        if lowered in _RESERVED_HEADERS or lowered.startswith(_RESERVED_PREFIXES):
            continue
        kept[name] = value
        size += len(name) + len(value)
    if size >= MAX_HEADER_BYTES:
        raise BadRequest(f"a task's headers are under {MAX_HEADER_BYTES} bytes")
    return kept


def check_schedule_time(schedule_time: datetime | None) -> None:
    if schedule_time is None:
        return
    if schedule_time.utcoffset() is None:
        raise BadRequest("schedule_time must carry a time zone")
    if schedule_time - datetime.now(UTC) > MAX_SCHEDULE_AHEAD:
        raise BadRequest("schedule_time is at most 30 days ahead")
