"""The local Cloud Tasks emulator against real PostgreSQL and a real HTTP receiver."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import flask
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from werkzeug.datastructures import Headers
from werkzeug.serving import make_server
from werkzeug.wrappers import Request

from common.errors import PublishError
from common.messaging.cloud_tasks import CloudTasksQueue
from common.messaging.tasks import TaskRequest, valid_task_id
from common.topology import Queue, RateLimits, TaskRetryConfig, Topology
from hookyard.tasks import TaskEmulator, store
from hookyard.tasks.dispatcher import eta_header
from hookyard.tasks.rest_api import handler as tasks_rest_api
from tests.support.scripted_server import Reply, ScriptedServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROJECT = "test-project"
LOCATION = "test-location"
# How long a dispatcher with nothing to do may sleep when a test is about its wake-up: far
# beyond every wait here, so only the wake-up itself can get the task through in time.
ASLEEP_S = 3600.0
# A bound against hangs only: a busy machine never reaches it.
HANG_S = 60.0


def _queue(
    name: str,
    *,
    rate: float = 500,
    burst: int | None = None,
    concurrent: int = 1000,
    **retry: float,
) -> Queue:
    retry.setdefault("min_backoff_s", 0.05)
    retry.setdefault("max_backoff_s", 0.2)
    return Queue(
        name=name,
        rate_limits=RateLimits(
            max_dispatches_per_second=rate,
            max_burst_size=burst,
            max_concurrent_dispatches=concurrent,
        ),
        retry_config=TaskRetryConfig.model_validate(retry),
    )


TOPOLOGY = Topology(
    topics=[],
    queues=[
        _queue("jobs", max_attempts=10),
        _queue("spaced", min_backoff_s=0.1, max_backoff_s=1.0, max_doublings=2),
        _queue("fragile", min_backoff_s=0.02, max_backoff_s=0.05, max_attempts=3),
        _queue("metered", rate=20, burst=1),
        _queue("narrow", concurrent=2),
    ],
)


@dataclass
class Attempt:
    queue: str
    task: str
    body: bytes
    headers: Headers
    started: float
    wall: float
    ended: float = 0.0


Script = Callable[[Attempt, int], Reply]


def succeed(_attempt: Attempt, _nth: int) -> Reply:
    return 204, 0.0, {}


def _parse_task(request: Request) -> Attempt:
    return Attempt(
        queue=request.path.removeprefix("/tasks/"),
        task=request.headers.get("X-CloudTasks-TaskName", ""),
        body=request.get_data(),
        headers=Headers(request.headers),
        started=time.monotonic(),
        wall=time.time(),
    )


class Receiver(ScriptedServer[Attempt]):
    """The worker's `/tasks/{queue}` on a real socket: answers per `script`, records all."""

    def __init__(self) -> None:
        self.script: Script = succeed
        super().__init__(
            _parse_task,
            lambda a, b: a.task == b.task,
            lambda attempt, nth: self.script(attempt, nth),  # noqa: PLW0108 - late-bound
            describe=lambda a: (a.queue, a.task),
        )

    @property
    def attempts(self) -> list[Attempt]:
        return self.records

    def of(self, task: str) -> list[Attempt]:
        return self.matching(lambda a: a.task == task)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    try:
        yield rec
    finally:
        rec.close()


EmulatorFactory = Callable[..., TaskEmulator]


@pytest.fixture
def make_emulator(engine: Engine, receiver: Receiver) -> Iterator[EmulatorFactory]:
    made: list[TaskEmulator] = []

    def make(**kw: Any) -> TaskEmulator:
        kw.setdefault("project", PROJECT)
        kw.setdefault("location", LOCATION)
        emulator = TaskEmulator(engine, TOPOLOGY, receiver.url, **kw)
        made.append(emulator)
        return emulator

    try:
        yield make
    finally:
        for emulator in made:
            emulator.stop(timeout=HANG_S)


@pytest.fixture
def emulator(make_emulator: EmulatorFactory) -> TaskEmulator:
    started = make_emulator()
    started.start()
    return started


def _count(n: int, task: str | None = None) -> Callable[[list[Attempt]], bool]:
    return lambda seen: sum(task is None or a.task == task for a in seen) >= n


def _settled(emulator: TaskEmulator, queue: str | None = None, timeout: float = HANG_S) -> None:
    deadline = time.monotonic() + timeout
    while emulator.pending_count(queue) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emulator.pending_count(queue) == 0


def _row(engine: Engine, queue: str, name: str) -> sa.Row[Any]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT state, outcome, attempts, responses FROM emulator.tasks "
                "WHERE queue = :queue AND name = :name"
            ),
            {"queue": queue, "name": name},
        ).one()


def _eta(engine: Engine, queue: str, name: str, asked: datetime) -> str:
    """The ETA header the task must carry: the schedule time asked for, or the creation time
    when that came later (a past schedule time means now, as in Cloud Tasks), which a busy
    machine can make happen between computing `asked` and creating the task."""
    with engine.connect() as conn:
        scheduled, created = conn.execute(
            sa.text(
                "SELECT schedule_time, create_time FROM emulator.tasks "
                "WHERE queue = :queue AND name = :name"
            ),
            {"queue": queue, "name": name},
        ).one()
    assert scheduled == max(asked, created)
    return eta_header(scheduled)


def test_a_task_arrives_with_its_body_and_the_cloud_tasks_headers(
    emulator: TaskEmulator, receiver: Receiver
) -> None:
    before = time.time()
    headers = {
        "Content-Type": "application/json",
        "X-Custom": "kept",
        "X-Google-Internal": "dropped",
        "X-CloudTasks-TaskRetryCount": "99",
        "User-Agent": "not-this-one",
    }
    assert emulator.create_task(TaskRequest("jobs", b'{"a": "\x00\xff"}', "first", headers))
    assert emulator.create_task(TaskRequest("jobs", b"bare", "second"))
    seen = receiver.wait_for(_count(2))
    _settled(emulator)

    first, second = sorted(seen, key=lambda a: a.task)
    assert first.queue == "jobs"
    assert first.body == b'{"a": "\x00\xff"}'
    h = first.headers
    assert h["User-Agent"] == "Google-Cloud-Tasks"
    assert h["X-CloudTasks-QueueName"] == "jobs"
    assert h["X-CloudTasks-TaskName"] == "first"
    assert h["X-CloudTasks-TaskRetryCount"] == "0"
    assert h["X-CloudTasks-TaskExecutionCount"] == "0"
    assert before - 1 <= float(h["X-CloudTasks-TaskETA"]) <= first.wall
    assert h["Content-Type"] == "application/json"
    assert h["X-Custom"] == "kept"
    assert "X-Google-Internal" not in h
    assert h.getlist("X-CloudTasks-TaskRetryCount") == ["0"]
    assert "X-CloudTasks-TaskPreviousResponse" not in h
    assert "X-CloudTasks-TaskRetryReason" not in h
    assert second.body == b"bare"
    assert "Content-Type" not in second.headers  # Cloud Tasks sets no default


def test_retry_count_counts_every_attempt_and_execution_count_leaves_out_5xx(
    emulator: TaskEmulator, receiver: Receiver, engine: Engine
) -> None:
    """TaskExecutionCount is the handler's responses so far, "not including failures due to
    5XX error codes"; TaskRetryCount counts every attempt before this one."""
    statuses = [500, 404, 503, 200]
    receiver.script = lambda a, nth: (statuses[nth], 0.0, {})
    eta = datetime.now(UTC) + timedelta(seconds=0.2)
    assert emulator.create_task(TaskRequest("jobs", b"x", "four-times", schedule_time=eta))
    seen = receiver.wait_for(_count(4))
    _settled(emulator)

    def header(name: str) -> list[str]:
        return [a.headers[name] for a in seen]

    assert header("X-CloudTasks-TaskRetryCount") == ["0", "1", "2", "3"]
    assert header("X-CloudTasks-TaskExecutionCount") == ["0", "0", "1", "1"]
    assert [a.headers.get("X-CloudTasks-TaskPreviousResponse") for a in seen] == [
        None, "500", "404", "503",
    ]  # fmt: skip
    assert seen[3].headers["X-CloudTasks-TaskRetryReason"] == "Service Unavailable"
    expected_eta = _eta(engine, "jobs", "four-times", eta)
    assert set(header("X-CloudTasks-TaskETA")) == {expected_eta}
    assert tuple(_row(engine, "jobs", "four-times")) == ("deleted", "succeeded", 4, 4)


def test_retry_delays_follow_the_documented_schedule(
    emulator: TaskEmulator, receiver: Receiver
) -> None:
    # spaced: min 0.1 s, max 1 s, 2 doublings -> 0.1, 0.2, 0.4, then linear 0.8
    receiver.script = lambda a, nth: (500 if nth < 4 else 200, 0.0, {})
    assert emulator.create_task(TaskRequest("spaced", b"x", "patient"))
    seen = receiver.wait_for(_count(5))
    _settled(emulator)
    gaps = [later.started - earlier.ended for earlier, later in itertools.pairwise(seen)]
    for gap, expected in zip(gaps, [0.1, 0.2, 0.4, 0.8], strict=True):
        assert gap >= expected * 0.95, gaps


def test_retry_after_on_503_lengthens_the_backoff(
    emulator: TaskEmulator, receiver: Receiver
) -> None:
    receiver.script = lambda a, nth: (
        (503, 0.0, {"Retry-After": "1"}) if nth == 0 else succeed(a, nth)
    )
    assert emulator.create_task(TaskRequest("jobs", b"x", "throttled"))
    first, second = receiver.wait_for(_count(2))
    assert second.started - first.ended >= 0.95  # not the queue's 0.05 s


def test_max_attempts_exhausts_and_tombstones_the_task(
    emulator: TaskEmulator, receiver: Receiver, engine: Engine
) -> None:
    receiver.script = lambda a, nth: (500, 0.0, {})
    assert emulator.create_task(TaskRequest("fragile", b"poison", "doomed"))
    receiver.wait_for(_count(3))
    _settled(emulator)
    time.sleep(0.3)  # several backoffs: an attempt past the limit would show by now
    assert [a.headers["X-CloudTasks-TaskRetryCount"] for a in receiver.attempts] == ["0", "1", "2"]
    assert tuple(_row(engine, "fragile", "doomed")) == ("deleted", "exhausted", 3, 3)
    assert not emulator.create_task(TaskRequest("fragile", b"again", "doomed"))


def test_a_name_is_taken_while_pending_and_for_the_tombstone_window(
    make_emulator: EmulatorFactory, receiver: Receiver, engine: Engine
) -> None:
    window_s = 600  # no test outlives it: "ran recently" holds however slowly this runs
    emulator = make_emulator(tombstone_s=window_s)
    emulator.start()
    emulator.pause("jobs")
    assert emulator.create_task(TaskRequest("jobs", b"one", "once"))
    assert not emulator.create_task(TaskRequest("jobs", b"two", "once"))  # pending
    emulator.resume("jobs")
    receiver.wait_for(_count(1))
    _settled(emulator)
    assert not emulator.create_task(TaskRequest("jobs", b"three", "once"))  # ran recently
    with engine.begin() as conn:  # the window passes: the tombstone is as old as the window
        conn.execute(
            sa.text(
                "UPDATE emulator.tasks SET deleted_at = deleted_at - make_interval(secs => :s) "
                "WHERE queue = 'jobs' AND name = 'once'"
            ),
            {"s": window_s},
        )
    assert emulator.create_task(TaskRequest("jobs", b"four", "once"))  # the window passed
    attempts = receiver.wait_for(_count(2))
    assert [a.body for a in attempts] == [b"one", b"four"]
    assert attempts[1].headers["X-CloudTasks-TaskRetryCount"] == "0"


def test_generated_names_are_unique_valid_ids(emulator: TaskEmulator, receiver: Receiver) -> None:
    assert emulator.create_task(TaskRequest("jobs", b"a"))
    assert emulator.create_task(TaskRequest("jobs", b"b"))
    first, second = receiver.wait_for(_count(2))
    assert first.task != second.task
    assert all(valid_task_id(a.task) and len(a.task) >= 16 for a in (first, second))


def test_the_dispatch_rate_is_never_above_the_limit_and_nothing_is_lost(
    make_emulator: EmulatorFactory, receiver: Receiver, engine: Engine
) -> None:
    """metered: 20/s, burst 1. The bucket holds its one token when the emulator starts, so
    the n-th claim (from 0) cannot come before n / 20 s after the start. Claim times are the
    emulator's own (`first_attempt_at`, the claiming transaction's start), taken after the
    token was: a busy machine only makes them later, never earlier. How fast the queue
    drains is a figure for `make bench`, not a verdict."""
    emulator = make_emulator()
    names = [f"m{i:02d}" for i in range(40)]
    for name in names:
        assert emulator.create_task(TaskRequest("metered", b"x", name))
    queue = TOPOLOGY.queue("metered")
    assert queue is not None
    rate, burst = queue.rate_limits.max_dispatches_per_second, queue.rate_limits.burst
    started = datetime.now(UTC)
    emulator.start()
    receiver.wait_for(_count(len(names)))
    _settled(emulator, "metered")
    with engine.connect() as conn:
        claims = conn.execute(
            sa.text(
                "SELECT name, first_attempt_at, attempts FROM emulator.tasks "
                "WHERE queue = 'metered' ORDER BY first_attempt_at, name"
            )
        ).all()

    assert [c.name for c in claims] == names  # in the order they were created
    assert all(c.attempts == 1 for c in claims)  # each attempted once, none lost
    assert sorted(a.task for a in receiver.attempts) == names
    # The bucket runs on the monotonic clock, PostgreSQL on the wall clock: allow their drift.
    drift = timedelta(milliseconds=10)
    early = [
        (c.name, c.first_attempt_at - started)
        for n, c in enumerate(claims)
        if c.first_attempt_at < started + timedelta(seconds=max(0, n - burst + 1) / rate) - drift
    ]
    assert not early, f"claimed before the bucket allowed: {early}"


def test_max_concurrent_dispatches_is_respected(emulator: TaskEmulator, receiver: Receiver) -> None:
    arrivals = itertools.count()
    together = threading.Barrier(2, timeout=HANG_S)

    def script(attempt: Attempt, nth: int) -> Reply:
        if next(arrivals) < 2:  # the first two are in flight at once, however slow we run
            with contextlib.suppress(threading.BrokenBarrierError):
                together.wait()
        return 200, 0.3, {}

    receiver.script = script
    for i in range(6):
        assert emulator.create_task(TaskRequest("narrow", b"x", f"n{i}"))
    receiver.wait_for(lambda s: len(s) == 6 and all(a.ended for a in s))
    _settled(emulator)
    assert receiver.max_active == 2


def test_a_future_schedule_time_is_not_dispatched_early(
    emulator: TaskEmulator, receiver: Receiver, engine: Engine
) -> None:
    eta = datetime.now(UTC) + timedelta(seconds=1)
    assert emulator.create_task(TaskRequest("jobs", b"later", "later", schedule_time=eta))
    (attempt,) = receiver.wait_for(_count(1))
    assert attempt.wall >= eta.timestamp()
    assert attempt.headers["X-CloudTasks-TaskETA"] == _eta(engine, "jobs", "later", eta)


def test_pause_resume_and_purge(
    make_emulator: EmulatorFactory, receiver: Receiver, engine: Engine
) -> None:
    emulator = make_emulator()
    emulator.start()
    emulator.pause("jobs")
    for name in ("p1", "p2", "p3"):
        assert emulator.create_task(TaskRequest("jobs", b"x", name))
    assert emulator.create_task(TaskRequest("narrow", b"x", "other-queue"))
    receiver.wait_for(_count(1, "other-queue"))  # other queues keep running
    time.sleep(0.3)
    assert [a.task for a in receiver.attempts] == ["other-queue"]
    assert emulator.pending_count("jobs") == 3
    # The pause lives in PostgreSQL, not in the emulator that set it.
    assert make_emulator().queue_state("jobs") == "PAUSED"

    emulator.resume("jobs")
    receiver.wait_for(_count(4))
    _settled(emulator)

    emulator.pause("jobs")
    for name in ("q1", "q2"):
        assert emulator.create_task(TaskRequest("jobs", b"x", name))
    assert emulator.purge("jobs") == 2
    assert emulator.pending_count("jobs") == 0
    assert not emulator.create_task(TaskRequest("jobs", b"x", "q1"))  # purged names stay taken
    assert emulator.create_task(TaskRequest("jobs", b"x", "after-purge"))  # later ones survive
    emulator.resume("jobs")
    receiver.wait_for(_count(1, "after-purge"))
    _settled(emulator)
    time.sleep(0.2)
    assert sorted(a.task for a in receiver.attempts) == sorted(
        ["other-queue", "p1", "p2", "p3", "after-purge"]
    )
    assert tuple(_row(engine, "jobs", "q2"))[:2] == ("deleted", "purged")


def test_tasks_survive_a_restart(make_emulator: EmulatorFactory, receiver: Receiver) -> None:
    first = make_emulator()
    first.start()
    first.pause("jobs")  # so the task is not attempted before the stop, however slow we run
    eta = datetime.now(UTC) + timedelta(seconds=0.3)
    assert first.create_task(TaskRequest("jobs", b"durable", "survivor", schedule_time=eta))
    first.stop()
    assert receiver.attempts == []
    assert first.pending_count("jobs") == 1

    second = make_emulator()
    second.start()
    second.resume("jobs")
    (attempt,) = receiver.wait_for(_count(1))
    assert (attempt.task, attempt.body) == ("survivor", b"durable")
    assert attempt.wall >= eta.timestamp()
    _settled(second)


def test_an_expired_lease_counts_as_a_failed_attempt(
    make_emulator: EmulatorFactory, receiver: Receiver, engine: Engine
) -> None:
    creator = make_emulator()
    assert creator.create_task(TaskRequest("jobs", b"x", "orphan"))
    with engine.begin() as conn:  # an emulator claims it, then dies before the attempt
        claimed = store.claim(conn, "jobs", 0.3, 10)
    assert [t.name for t in claimed] == ["orphan"]

    emulator = make_emulator()
    emulator.start()
    (attempt,) = receiver.wait_for(_count(1))
    _settled(emulator)
    assert attempt.headers["X-CloudTasks-TaskRetryCount"] == "1"
    assert attempt.headers["X-CloudTasks-TaskExecutionCount"] == "0"
    assert attempt.headers["X-CloudTasks-TaskRetryReason"] == "lease expired"
    assert "X-CloudTasks-TaskPreviousResponse" not in attempt.headers


def test_a_task_created_by_another_process_wakes_the_dispatcher(
    make_emulator: EmulatorFactory, receiver: Receiver
) -> None:
    idle = make_emulator(max_idle_s=ASLEEP_S)
    idle.start()
    time.sleep(0.5)  # let the dispatcher find nothing and fall asleep
    creator = make_emulator()  # never started: only PostgreSQL NOTIFY connects the two
    assert creator.create_task(TaskRequest("jobs", b"x", "nudge"))
    (attempt,) = receiver.wait_for(_count(1))
    assert attempt.task == "nudge"


def test_stop_wakes_the_sleeping_dispatcher_and_is_idempotent(
    make_emulator: EmulatorFactory,
) -> None:
    """Stop may wait as long as it likes for the dispatcher: only waking it ends the wait."""
    emulator = make_emulator(max_idle_s=ASLEEP_S)
    emulator.start()
    time.sleep(0.2)

    def stop_twice() -> None:
        emulator.stop(ASLEEP_S)
        emulator.stop(ASLEEP_S)

    stopping = threading.Thread(target=stop_twice, daemon=True)
    stopping.start()
    stopping.join(HANG_S)
    assert not stopping.is_alive(), "stop waited for the dispatcher's idle sleep"
    with pytest.raises(RuntimeError):
        emulator.start()


@pytest.fixture
def tasks_api(make_emulator: EmulatorFactory) -> Iterator[str]:
    """The emulator's Cloud Tasks REST API on a real socket, as `CloudTasksClient` reaches it."""
    emulator = make_emulator()
    emulator.start()
    app = flask.Flask("tasks-test")
    api = tasks_rest_api(emulator)

    @app.route("/v2/<path:rest>", methods=["GET", "POST", "DELETE"])
    def route(rest: str) -> flask.Response:
        return api(flask.request)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(HANG_S)


def test_the_production_adapter_enqueues_through_the_rest_api(
    tasks_api: str, receiver: Receiver, engine: Engine
) -> None:
    tasks = CloudTasksQueue(
        PROJECT, LOCATION, worker_url=receiver.url, service_account=None, timeout_s=HANG_S,
        endpoint=tasks_api,
    )  # fmt: skip
    eta = datetime.now(UTC) + timedelta(seconds=0.2)
    request = TaskRequest("jobs", b"over http", "client-1", {"X-Trace": "t"}, eta)
    assert tasks.enqueue(request) is True
    assert tasks.enqueue(request) is False
    assert tasks.enqueue(TaskRequest("jobs", b"anonymous")) is True
    with pytest.raises(PublishError):
        tasks.enqueue(TaskRequest("no-such-queue", b"x"))
    with pytest.raises(PublishError):
        tasks.enqueue(TaskRequest("jobs", b"x", "bad name"))
    seen = receiver.wait_for(_count(2))
    (named,) = [a for a in seen if a.task == "client-1"]
    assert named.body == b"over http"
    assert named.headers["X-Trace"] == "t"
    assert named.headers["X-CloudTasks-TaskETA"] == _eta(engine, "jobs", "client-1", eta)


def test_the_production_adapter_reports_an_unreachable_emulator() -> None:
    from tests.support.stack import free_port

    tasks = CloudTasksQueue(
        PROJECT, LOCATION, worker_url="http://127.0.0.1:1", service_account=None, timeout_s=5,
        endpoint=f"http://127.0.0.1:{free_port()}",
    )  # fmt: skip
    with pytest.raises(PublishError):
        tasks.enqueue(TaskRequest("jobs", b"x", "nobody-home"))


@pytest.mark.parametrize(
    ("name", "valid"),
    [("a", True), ("job-20261016T120000Z", True), ("A_b-9", True), ("x" * 500, True),
     ("", False), ("x" * 501, False), ("has space", False), ("dot.ted", False),
     ("colon:", False), ("trailing\n", False), ("ümlaut", False)],
)  # fmt: skip
def test_valid_task_id(name: str, valid: bool) -> None:
    assert valid_task_id(name) is valid
