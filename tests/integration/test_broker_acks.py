"""Acks settled in batches: real PostgreSQL, real HTTP pushes, statements seen through
SQLAlchemy's events. A test holds the flush where it needs acks to gather, and lets it go on
a signal the broker itself gives (a statement it runs), never after a sleep."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from werkzeug.wrappers import Request

from common.topology import RetryPolicy, Subscription, Topic, Topology
from hookyard.broker import Broker, store
from hookyard.broker.acks import AckBatcher
from hookyard.broker.settle import Ack, Outcome, Settler
from hookyard.broker.store import Delivery, NewMessage
from tests.support.scripted_server import ScriptedServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROJECT = "test-project"
# A bound against hangs only: a busy machine never reaches it.
HANG_S = 60.0
# Longer than any wait here: only a wake-up can make the dispatcher look again in time.
ASLEEP_S = 3600.0
FAST = RetryPolicy(minimum_backoff_s=0.05, maximum_backoff_s=0.2)

TOPOLOGY = Topology(
    topics=[Topic(name="plain"), Topic(name="bare"), Topic(name="sequenced")],
    subscriptions=[
        Subscription(name="plain", topic="plain", push_path="/push/plain", retry_policy=FAST),
        # No retry policy: Pub/Sub's push backoff, whose nack streak an ack ends.
        Subscription(name="bare", topic="bare", push_path="/push/bare"),
        # The longest lease there is: only the flush can free the next message of a key.
        Subscription(
            name="sequencer",
            topic="sequenced",
            push_path="/push/sequencer",
            retry_policy=FAST,
            enable_message_ordering=True,
            ack_deadline_seconds=600,
        ),
    ],
)


@dataclass
class Push:
    subscription: str
    message_id: str
    started: float = 0.0
    ended: float = 0.0


def _parse(request: Request) -> Push:
    body = request.get_json(force=True)
    return Push(request.path.removeprefix("/push/"), str(body["message"]["messageId"]))


@pytest.fixture
def receiver() -> Iterator[ScriptedServer[Push]]:
    """Acks every push at once."""
    server = ScriptedServer(_parse, lambda a, b: a.message_id == b.message_id,
                            lambda push, nth: (204, 0.0, {}))  # fmt: skip
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def make_broker(engine: Engine, receiver: ScriptedServer[Push]) -> Iterator[Callable[..., Broker]]:
    made: list[Broker] = []

    def make(**kw: Any) -> Broker:
        broker = Broker(engine, TOPOLOGY, receiver.url, project=PROJECT, **kw)
        made.append(broker)
        return broker

    try:
        yield make
    finally:
        for broker in made:
            broker.stop(HANG_S)


@dataclass
class Statements:
    """What the broker runs, as SQLAlchemy sees it: ack statements (with how many acks each
    carries), the threads they ran on, and commits per thread. Holds the first ack statement
    until `release` is set."""

    release: threading.Event = field(default_factory=threading.Event)
    ack_sizes: list[int] = field(default_factory=list)
    ack_threads: set[threading.Thread] = field(default_factory=set)
    commits: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    after: list[Callable[[Any, dict[str, Any]], None]] = field(default_factory=list)

    def before(self, _conn: Any, clause: Any, _multi: Any, params: Any, _opts: Any) -> Any:
        if "SET state = 'acked'" in str(clause):
            with self.lock:
                first = not self.ack_sizes
                self.ack_sizes.append(len(params.get("subscriptions", [None])))
                self.ack_threads.add(threading.current_thread())
            if first:
                assert self.release.wait(HANG_S), "the held flush was never released"
        return clause, _multi, params

    def executed(self, _conn: Any, clause: Any, _multi: Any, params: Any, *_rest: Any) -> None:
        for hook in self.after:
            hook(clause, params)

    def committed(self, _conn: Any) -> None:
        name = threading.current_thread().name
        with self.lock:
            self.commits[name] = self.commits.get(name, 0) + 1


@pytest.fixture
def statements(engine: Engine) -> Iterator[Statements]:
    seen = Statements()
    sa.event.listen(engine, "before_execute", seen.before, retval=True)
    sa.event.listen(engine, "after_execute", seen.executed)
    sa.event.listen(engine, "commit", seen.committed)
    try:
        yield seen
    finally:
        seen.release.set()
        sa.event.remove(engine, "before_execute", seen.before)
        sa.event.remove(engine, "after_execute", seen.executed)
        sa.event.remove(engine, "commit", seen.committed)


def _states(engine: Engine, subscription: str) -> dict[str, tuple[str, int | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT message_id, state, last_status FROM emulator.deliveries "
                    "WHERE subscription = :s"), {"s": subscription},
        ).all()  # fmt: skip
    return {str(r.message_id): (r.state, r.last_status) for r in rows}


def _claims_with_limit(limit: int, seen: threading.Event, nth: int) -> Callable[..., None]:
    """Sets `seen` when the dispatcher has claimed with `limit` free slots for the nth time."""
    count = 0

    def hook(clause: Any, params: dict[str, Any]) -> None:
        nonlocal count
        if "FOR UPDATE OF d SKIP LOCKED" in str(clause) and params.get("limit") == limit:
            count += 1
            if count == nth:
                seen.set()

    return hook


def test_acks_pushed_at_once_are_settled_by_one_statement_after_the_held_one(
    make_broker: Callable[..., Broker],
    receiver: ScriptedServer[Push],
    statements: Statements,
    engine: Engine,
) -> None:
    """N pushes acked at once while the first flush is held: every push frees its slot before
    its ack is stored (the dispatcher claims with all N slots free again), and the acks that
    gathered meanwhile take one statement, one transaction."""
    pushes = 20
    broker = make_broker(max_concurrent_pushes=pushes)
    ids = broker.publish_many("plain", [NewMessage(str(i).encode()) for i in range(pushes)])
    all_free = threading.Event()
    # The first claim takes the N messages; the second with N free slots comes only once
    # every push has handed its ack over.
    statements.after.append(_claims_with_limit(pushes, all_free, nth=2))
    broker.start()
    receiver.wait_for(lambda seen: len(seen) == pushes, HANG_S)
    assert all_free.wait(HANG_S), "push slots were not freed while their acks waited"
    assert {state for state, _ in _states(engine, "plain").values()} == {"inflight"}
    statements.release.set()
    _wait_until(lambda: set(_states(engine, "plain").values()) == {("acked", 204)})

    assert sorted(_states(engine, "plain")) == sorted(ids)
    assert sum(statements.ack_sizes) == pushes
    assert len(statements.ack_sizes) <= 2, statements.ack_sizes
    (flusher,) = statements.ack_threads
    # Each flush is one statement, atomic by itself: no transaction, so nothing to commit.
    assert statements.commits.get(flusher.name, 0) == 0


def test_the_next_message_of_an_ordering_key_waits_for_the_ack_to_be_stored_then_goes(
    make_broker: Callable[..., Broker],
    receiver: ScriptedServer[Push],
    statements: Statements,
    engine: Engine,
) -> None:
    """While the first message's ack is held, the dispatcher finds nothing to claim and goes
    to sleep for its 605 s lease; only the wake-up after the flush brings the second."""
    first_ack_state: list[tuple[str, int | None]] = []
    asleep = threading.Event()

    def after(clause: Any, params: dict[str, Any]) -> None:
        # With one push slot the dispatcher asks how long it may sleep only when it claimed
        # less than it could: once the first push has ended and its ack still waits.
        if "clock_timestamp()" in str(clause):
            asleep.set()
            statements.release.set()

    statements.after.append(after)

    def answer(push: Push, nth: int) -> tuple[int, float, dict[str, str]]:
        if push.message_id == second:
            first_ack_state.append(_states(engine, "sequencer")[first])
        return 204, 0.0, {}

    receiver.answer = answer
    broker = make_broker(max_concurrent_pushes=1, max_idle_s=ASLEEP_S)
    first, second = broker.publish_many(
        "sequenced", [NewMessage(b"1", ordering_key="k"), NewMessage(b"2", ordering_key="k")]
    )
    broker.start()
    pushed = receiver.wait_for(lambda seen: len(seen) == 2, HANG_S)

    assert asleep.is_set()
    assert [p.message_id for p in pushed] == [first, second]
    assert first_ack_state == [("acked", 204)]
    assert pushed[1].started >= pushed[0].ended


def test_stop_settles_the_acks_still_waiting_and_ends_the_flusher(
    make_broker: Callable[..., Broker],
    receiver: ScriptedServer[Push],
    statements: Statements,
    engine: Engine,
) -> None:
    pushes = 12
    broker = make_broker(max_concurrent_pushes=pushes)
    ids = broker.publish_many("plain", [NewMessage(str(i).encode()) for i in range(pushes)])
    all_handed_over = threading.Event()
    statements.after.append(_claims_with_limit(pushes, all_handed_over, nth=2))
    broker.start()
    assert all_handed_over.wait(HANG_S)
    statements.release.set()
    broker.stop(HANG_S)

    assert _states(engine, "plain") == {i: ("acked", 204) for i in ids}
    (flusher,) = statements.ack_threads
    assert not flusher.is_alive()


def _claimed(engine: Engine, subscription: str, count: int) -> list[Delivery]:
    with engine.begin() as conn:
        claimed = store.claim(conn, {subscription: 60.0}, count)
    assert len(claimed) == count
    return claimed


def _streak(engine: Engine, subscription: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT streak FROM emulator.push_backoff WHERE subscription = :s"),
                {"s": subscription},
            ).scalar_one()
        )


def test_a_stale_ack_changes_nothing_and_a_current_one_in_its_batch_counts(
    make_broker: Callable[..., Broker], engine: Engine
) -> None:
    """The ack of a claim whose lease ran out, and that a later attempt took over, neither
    settles the delivery nor ends its subscription's nack streak; an ack of the current claim
    in the same batch does both."""
    broker = make_broker()
    broker.install()
    bare_id = broker.publish("bare", b"b", {})
    plain_id = broker.publish("plain", b"p", {})
    (old_claim,) = _claimed(engine, "bare", 1)
    (plain_claim,) = _claimed(engine, "plain", 1)
    with engine.begin() as conn:  # the lease runs out, a nack streak starts, another claim
        assert store.mark_retry(conn, old_claim, 0.0, None, "lease expired")
        store.pause_after_nack(conn, "bare", lambda _streak: 0.0)
    (new_claim,) = _claimed(engine, "bare", 1)
    assert new_claim.attempts == old_claim.attempts + 1

    settled: list[tuple[Ack, Outcome]] = []

    def report(acks: Sequence[Ack], outcomes: Sequence[Outcome]) -> None:
        settled.extend(zip(acks, outcomes, strict=True))

    batcher = AckBatcher(engine, Settler(TOPOLOGY, PROJECT).acks, report, max_batch=10)
    batcher.add(old_claim, 200)  # queued before start: one batch with the next
    batcher.add(plain_claim, 204)
    batcher.start()
    batcher.close()

    assert [(a.delivery, o) for a, o in settled] == [(old_claim, "stale"), (plain_claim, "acked")]
    assert _states(engine, "bare") == {bare_id: ("inflight", None)}
    assert _states(engine, "plain")[plain_id] == ("acked", 204)
    assert _streak(engine, "bare") == 1

    batcher.add(new_claim, 202)  # closed: settled on this thread
    assert _states(engine, "bare") == {bare_id: ("acked", 202)}
    assert _streak(engine, "bare") == 0


def test_a_batch_holds_at_most_max_batch_acks_and_a_full_queue_holds_the_pushers(
    make_broker: Callable[..., Broker], statements: Statements, engine: Engine
) -> None:
    max_batch, count = 4, 10
    broker = make_broker()
    broker.install()
    ids = broker.publish_many("plain", [NewMessage(str(i).encode()) for i in range(count)])
    claims = _claimed(engine, "plain", count)
    batcher = AckBatcher(
        engine, Settler(TOPOLOGY, PROJECT).acks, lambda _acks, _outcomes: None,
        max_batch=max_batch,
    )  # fmt: skip
    batcher.start()
    returned = threading.Semaphore(0)
    done: list[int] = []

    def push(delivery: Delivery) -> None:
        batcher.add(delivery, 204)
        done.append(delivery.message_id)
        returned.release()

    pushers = [threading.Thread(target=push, args=(claim,)) for claim in claims]
    for pusher in pushers:
        pusher.start()
    # The held flush took at least one ack, and a full batch waits behind it.
    for _ in range(max_batch + 1):
        assert returned.acquire(timeout=HANG_S)
    assert len(done) <= 2 * max_batch, "a full queue did not hold the pushers back"
    statements.release.set()
    for pusher in pushers:
        pusher.join(HANG_S)
    batcher.close()

    assert _states(engine, "plain") == {i: ("acked", 204) for i in ids}
    assert max(statements.ack_sizes) <= max_batch
    assert sum(statements.ack_sizes) == count


def _wait_until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG_S
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.02)


def test_leases_and_acks_go_through_the_bookkeeping_engine_and_publishes_do_not(
    engine: Engine, make_broker: Callable[..., Broker], receiver: ScriptedServer[Push]
) -> None:
    from common.config import Settings
    from common.db.engine import create_db_engine

    bookkeeping = create_db_engine(
        Settings(db_pool_size=4), engine.url.render_as_string(hide_password=False),
        asynchronous_commit=True,
    )  # fmt: skip
    durable: list[str] = []
    kept: list[str] = []

    def on_durable(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        durable.append(" ".join(statement.split()))

    def on_bookkeeping(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        kept.append(" ".join(statement.split()))

    sa.event.listen(engine, "before_cursor_execute", on_durable)
    sa.event.listen(bookkeeping, "before_cursor_execute", on_bookkeeping)
    try:
        # The tests' server runs without synchronous commit at all: what matters is who set it.
        setting = "SELECT setting, source FROM pg_settings WHERE name = 'synchronous_commit'"
        with bookkeeping.connect() as conn:
            assert tuple(conn.exec_driver_sql(setting).one()) == ("off", "session")
        with engine.connect() as conn:
            assert conn.exec_driver_sql(setting).one().source != "session"
        broker = make_broker(bookkeeping_engine=bookkeeping)
        broker.start()
        ids = {broker.publish("plain", f"m{n}".encode(), {}) for n in range(5)}
        receiver.wait_for(lambda seen: ids <= {p.message_id for p in seen}, HANG_S)
        deadline = time.monotonic() + HANG_S
        while broker.pending_count("plain") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert broker.pending_count("plain") == 0
        broker.stop(HANG_S)
    finally:
        sa.event.remove(engine, "before_cursor_execute", on_durable)
        sa.event.remove(bookkeeping, "before_cursor_execute", on_bookkeeping)
        bookkeeping.dispose()
    assert any("INSERT INTO emulator.messages" in s for s in durable)  # the publishes
    assert not any("INSERT INTO emulator.messages" in s for s in kept)
    assert any("WITH lease AS" in s for s in kept)  # the claims
    assert any("SET state = 'acked'" in s for s in kept)
    assert not any("WITH lease AS" in s or "SET state = 'acked'" in s for s in durable)
