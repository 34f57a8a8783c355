"""Local emulator figures that tests no longer assert, because speed is no verdict: replay
throughput against its configured rate, a task queue's dispatch rate, cross-process wake-up
latency and stop latency of the Pub/Sub broker and the Cloud Tasks emulator, and the broker's
push throughput with the statements it sends per acked message.

Prints figures; asserts nothing about speed. Runs on the tests' PostgreSQL (`TEST_DATABASE_URL`,
else embedded, in a temporary directory), one fresh database per figure, on 127.0.0.1 only,
and stops everything it starts. Run with `python -m tests.load.bench_emulators` (also part of
`make bench`).
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from common.logging import configure_logging
from common.messaging.tasks import TaskRequest
from common.topology import Queue, RateLimits, Subscription, Topic, Topology
from hookyard.broker import Broker
from hookyard.broker.store import NewMessage
from hookyard.tasks import TaskEmulator
from tests.support.dead_letter_seeds import seed_dead_letters
from tests.support.postgres import TestServer, start_test_server
from tests.support.scripted_server import ScriptedServer
from tests.support.stack import TEST_SECRETS, admin, running_stack, wait_for

REPLAY_COUNT = 5_000
REPLAY_RATE = 500
TASK_RATE = 20
TASK_WINDOW_S = 5.0
WAKEUPS = 10
STOPS = 5
# What a figure may take at worst before the bench gives up on it: a hang, not slowness.
HANG_S = 600.0
# Long enough that only a wake-up, never the dispatcher's own timer, explains a prompt push.
ASLEEP_S = 60.0

TOPOLOGY = Topology(
    topics=[Topic(name="plain")],
    subscriptions=[Subscription(name="plain", topic="plain", push_path="/push/plain")],
    queues=[
        Queue(
            name="metered",
            rate_limits=RateLimits(max_dispatches_per_second=TASK_RATE, max_burst_size=1),
        ),
        Queue(name="jobs"),
    ],
)


@dataclass
class Arrival:
    path: str
    started: float = 0.0
    ended: float = 0.0


class Stoppable(Protocol):
    def start(self) -> None: ...

    def stop(self, timeout: float = ...) -> None: ...


def _recorder() -> ScriptedServer[Arrival]:
    """Answers 204 to every push and task: an ack and a success."""
    return ScriptedServer(lambda r: Arrival(r.path), lambda a, b: False, lambda a, n: (204, 0, {}))


@contextmanager
def _fresh(server: TestServer) -> Iterator[tuple[str, Engine]]:
    database = server.create_database()
    engine = server.engine(database)
    try:
        yield database, engine
    finally:
        engine.dispose()
        server.drop_database(database)


def _ms(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    return f"p50 {statistics.median(ms):7.1f} ms, max {ms[-1]:7.1f} ms ({len(ms)} samples)"


def replay(server: TestServer) -> None:
    root = Path(tempfile.mkdtemp(prefix="hookyard-bench-replay-"))
    try:
        with _fresh(server) as (database, engine):
            seed_dead_letters(engine, REPLAY_COUNT, "bench")
            with (
                running_stack(server, database, root) as stack,
                admin(httpx.Client(base_url=stack.url, timeout=HANG_S)) as client,
            ):
                body = {"filter": {"reason": "bench"}, "reason": "bench",
                        "max_per_second": REPLAY_RATE}  # fmt: skip
                began = time.perf_counter()
                replay_id = client.post("/admin/dead-letters/replay", json=body).json()["replay_id"]
                path = f"/admin/replays/{replay_id}"
                wait_for(lambda: client.get(path).json()["state"] == "done", HANG_S, 0.05)
                elapsed = time.perf_counter() - began
            with engine.connect() as conn:
                span = conn.execute(
                    sa.text("SELECT extract(epoch FROM finished_at - created_at) FROM replays "
                            "WHERE id = :id"), {"id": replay_id},
                ).scalar_one()  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ideal = REPLAY_COUNT / REPLAY_RATE
    achieved = REPLAY_COUNT / elapsed
    print(f"replay of {REPLAY_COUNT} dead letters at {REPLAY_RATE}/s (ideal {ideal:.0f} s):")
    print(f"  start -> done, seen by the client: {elapsed:6.1f} s")
    print(f"  created -> finished, server's own: {float(span):6.1f} s")
    print(f"  achieved {achieved:6.0f}/s = {achieved / REPLAY_RATE:.0%} of the configured rate")


def task_rate(server: TestServer) -> None:
    """As Cloud Tasks' token bucket allows: one at once, then `TASK_RATE` a second."""
    total = int(TASK_RATE * TASK_WINDOW_S * 1.3) + 1
    with _fresh(server) as (_, engine):
        receiver = _recorder()
        emulator = TaskEmulator(engine, TOPOLOGY, receiver.url)
        try:
            for i in range(total):
                emulator.create_task(TaskRequest("metered", b"x", f"m{i}"))
            emulator.start()
            first = receiver.wait_for(_at_least(1), HANG_S)[0].started
            end = first + TASK_WINDOW_S
            seen = receiver.wait_for(lambda s: s[-1].started > end, HANG_S)
        finally:
            emulator.stop(HANG_S)
            receiver.close()
    in_window = sum(1 for a in seen if first < a.started <= end)
    expected = TASK_RATE * TASK_WINDOW_S
    print(f"task dispatches at {TASK_RATE}/s, burst 1, in the {TASK_WINDOW_S:.0f} s after the "
          f"first: {in_window} (the bucket allows {expected:.0f}: "
          f"{in_window / expected:.0%})")  # fmt: skip


def _at_least(count: int) -> Callable[[list[Arrival]], bool]:
    return lambda seen: len(seen) >= count


def _wakeups(send: Callable[[], object], receiver: ScriptedServer[Arrival]) -> list[float]:
    """`send` from a party whose dispatcher is not running: only NOTIFY can wake the one
    that is, and it sleeps up to `ASLEEP_S` otherwise."""
    samples = []
    for i in range(WAKEUPS):
        time.sleep(0.3)  # nothing to do: the dispatcher falls asleep
        began = time.monotonic()
        send()
        arrived = receiver.wait_for(_at_least(i + 1), HANG_S)[i].started
        samples.append(arrived - began)
    return samples


def broker_wakeups(server: TestServer) -> list[float]:
    with _fresh(server) as (_, engine):
        receiver = _recorder()
        idle = Broker(engine, TOPOLOGY, receiver.url, max_idle_s=ASLEEP_S)
        publisher = Broker(engine, TOPOLOGY, receiver.url)
        idle.start()
        try:
            return _wakeups(lambda: publisher.publish("plain", b"x", {}), receiver)
        finally:
            idle.stop(HANG_S)
            receiver.close()


def task_wakeups(server: TestServer) -> list[float]:
    with _fresh(server) as (_, engine):
        receiver = _recorder()
        idle = TaskEmulator(engine, TOPOLOGY, receiver.url, max_idle_s=ASLEEP_S)
        creator = TaskEmulator(engine, TOPOLOGY, receiver.url)
        idle.start()
        try:
            return _wakeups(lambda: creator.create_task(TaskRequest("jobs", b"x")), receiver)
        finally:
            idle.stop(HANG_S)
            receiver.close()


def stops(server: TestServer, make: Callable[[Engine, str], Stoppable]) -> list[float]:
    """Stopping an idle dispatcher in its sleep: the time to wake it and join its thread."""
    samples = []
    with _fresh(server) as (_, engine):
        receiver = _recorder()
        try:
            for _ in range(STOPS):
                running = make(engine, receiver.url)
                running.start()
                time.sleep(0.3)
                began = time.perf_counter()
                running.stop(HANG_S)
                samples.append(time.perf_counter() - began)
        finally:
            receiver.close()
    return samples


PUBLISHES = 300
BATCH = 1000
# Two subscriptions on one topic, as `events` has (event-log, ledger).
PUBLISH_TOPOLOGY = Topology(
    topics=[Topic(name="plain")],
    subscriptions=[
        Subscription(name="plain", topic="plain", push_path="/push/plain"),
        Subscription(name="copy", topic="plain", push_path="/push/copy"),
    ],
)


def publish_costs(server: TestServer) -> tuple[list[float], list[float]]:
    """One message per request, and 1,000 per request, straight into the broker's store (the
    dispatcher is not started, so nothing else competes for the database)."""
    with _fresh(server) as (_, engine):
        broker = Broker(engine, PUBLISH_TOPOLOGY, "http://127.0.0.1:1")
        broker.install()
        singles, batches = [], []
        for n in range(PUBLISHES):
            began = time.perf_counter()
            broker.publish("plain", f"m{n}".encode(), {"n": str(n)})
            singles.append(time.perf_counter() - began)
        for _ in range(5):
            began = time.perf_counter()
            broker.publish_many("plain", [NewMessage(b"x", {"n": str(n)}) for n in range(BATCH)])
            batches.append(time.perf_counter() - began)
    return singles[20:], batches


PUSHES = 1000
PUSH_SLOTS = 16
PUSH_RUNS = 3
# A stream, not a backlog: a claim's cost grows with the backlog, which would hide the rest.
PUSH_CHUNK = 32
PUSH_WINDOW = 4 * PUSH_SLOTS


def push_throughput(server: TestServer) -> tuple[list[float], list[float]]:
    """`PUSHES` messages published `PUSH_CHUNK` at a time whenever fewer than `PUSH_WINDOW`
    are unacked, pushed to an endpoint that acks at once: messages a second from the first
    publish to the last ack stored, and the statements and COMMITs the broker sends per
    message to claim and settle them (its engine's, less one statement per publish)."""
    runs = [_push_stream(server) for _ in range(PUSH_RUNS)]
    return [rate for rate, _ in runs], [commits for _, commits in runs]


def _push_stream(server: TestServer) -> tuple[float, float]:
    sent = PUSHES // PUSH_CHUNK * PUSH_CHUNK
    commits = 0

    def counted(*_args: object) -> None:
        nonlocal commits
        commits += 1

    with _fresh(server) as (_, engine):
        receiver = _recorder()
        broker = Broker(engine, TOPOLOGY, receiver.url, max_concurrent_pushes=PUSH_SLOTS)
        sa.event.listen(engine, "commit", counted)
        sa.event.listen(engine, "before_cursor_execute", counted)
        try:
            broker.start()
            before = commits
            began = time.perf_counter()
            for _ in range(sent // PUSH_CHUNK):
                wait_for(lambda: broker.pending_count("plain") < PUSH_WINDOW, HANG_S, 0.002)
                broker.publish_many("plain", [NewMessage(b"x")] * PUSH_CHUNK)
            wait_for(lambda: broker.pending_count("plain") == 0, HANG_S, 0.002)
            elapsed = time.perf_counter() - began
            spent = commits - before - sent // PUSH_CHUNK
        finally:
            broker.stop(HANG_S)
            receiver.close()
    return sent / elapsed, spent / sent


def _spread(samples: list[float], fmt: str) -> str:
    low, high = min(samples), max(samples)
    middle = statistics.median(samples)
    return f"median {middle:{fmt}} (min {low:{fmt}}, max {high:{fmt}}, {len(samples)} runs)"


def main() -> None:
    # Per-message INFO lines would measure the terminal.
    configure_logging("WARNING")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    os.environ.update(TEST_SECRETS)  # the in-process stack reads its secrets from here
    server = start_test_server()
    try:
        singles, batches = publish_costs(server)
        print("broker publish, in-process, two copies per message (stored, routed, notified):")
        print(f"  {'1 message a request':<22}{_ms(singles)}")
        print(f"  {f'{BATCH} a request':<22}{_ms(batches)}")
        rates, commits = push_throughput(server)
        print(f"broker push, a stream of {PUSHES} messages to an endpoint that acks at once, "
              f"{PUSH_SLOTS} push slots:")  # fmt: skip
        print(f"  {'messages a second':<22}{_spread(rates, '6.0f')}")
        print(f"  {'statements a message':<22}{_spread(commits, '6.2f')}")
        replay(server)
        task_rate(server)
        print("wake-up, a publish or create in another process -> the push arrives:")
        print(f"  {'Pub/Sub broker':<22}{_ms(broker_wakeups(server))}")
        print(f"  {'Cloud Tasks emulator':<22}{_ms(task_wakeups(server))}")
        print("stop of an idle dispatcher:")
        broker = stops(server, lambda e, url: Broker(e, TOPOLOGY, url, max_idle_s=ASLEEP_S))
        tasks = stops(server, lambda e, url: TaskEmulator(e, TOPOLOGY, url, max_idle_s=ASLEEP_S))
        print(f"  {'Pub/Sub broker':<22}{_ms(broker)}")
        print(f"  {'Cloud Tasks emulator':<22}{_ms(tasks)}")
    finally:
        server.close()


if __name__ == "__main__":
    main()
