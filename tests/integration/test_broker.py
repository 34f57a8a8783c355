"""The local Pub/Sub push emulator against real PostgreSQL and a real HTTP receiver."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from werkzeug.wrappers import Request

from common.topology import DeadLetterPolicy, RetryPolicy, Subscription, Topic, Topology
from hookyard.broker import Broker, store
from hookyard.broker.backoff import PushBackoff
from hookyard.broker.settle import ACK_STATUSES, PushResult
from tests.support.scripted_server import ScriptedServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FAST = RetryPolicy(minimum_backoff_s=0.05, maximum_backoff_s=0.2)
PROJECT = "test-project"
# How long a dispatcher with nothing to do may sleep when a test is about its wake-up: far
# beyond every wait here, so only the wake-up itself can get the message through in time.
ASLEEP_S = 3600.0
# A bound against hangs only: a busy machine never reaches it.
HANG_S = 60.0


def _sub(name: str, topic: str, **kw: Any) -> Subscription:
    kw.setdefault("retry_policy", FAST)
    return Subscription(name=name, topic=topic, push_path=f"/push/{name}", **kw)


TOPOLOGY = Topology(
    topics=[
        Topic(name="orders"),
        Topic(name="orders-dead-letter"),
        Topic(name="sequenced"),
        Topic(name="plain"),
        Topic(name="slow"),
        Topic(name="nobody-listens"),
    ],
    subscriptions=[
        _sub(
            "billing",
            "orders",
            dead_letter_policy=DeadLetterPolicy(
                dead_letter_topic="orders-dead-letter", max_delivery_attempts=5
            ),
        ),
        _sub("shipping", "orders"),
        _sub("graveyard", "orders-dead-letter"),
        _sub("sequencer", "sequenced", enable_message_ordering=True),
        _sub("plain", "plain"),
        _sub(
            "patient",
            "slow",
            retry_policy=RetryPolicy(minimum_backoff_s=0.25, maximum_backoff_s=1.0),
            dead_letter_policy=DeadLetterPolicy(
                dead_letter_topic="orders-dead-letter", max_delivery_attempts=10
            ),
        ),
    ],
)

# The model enforces Pub/Sub's 10 s minimum ack deadline; a 1 s one keeps the timeout test fast.
TIMEOUT_TOPOLOGY = Topology(
    topics=[Topic(name="slow")],
    subscriptions=[
        Subscription.model_construct(
            name="hasty", topic="slow", push_path="/push/hasty", ack_deadline_seconds=1,
            retry_policy=FAST,
        )
    ],
)  # fmt: skip


@dataclass
class Received:
    subscription: str
    body: dict[str, Any]
    headers: dict[str, str]
    started: float
    ended: float = 0.0

    @property
    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = self.body["message"]
        return message

    @property
    def message_id(self) -> str:
        return str(self.message["messageId"])


Script = Callable[[Received, int], "tuple[int, float]"]


def _parse_push(request: Request) -> Received:
    return Received(
        subscription=request.path.removeprefix("/push/"),
        body=json.loads(request.get_data()),
        headers=dict(request.headers),
        started=time.monotonic(),
    )


class Receiver(ScriptedServer[Received]):
    """A Pub/Sub push endpoint: answers per `script`, records every request. Attempts are
    counted per subscription: each one's copy of a message has its own history."""

    def __init__(self) -> None:
        self.script: Script = lambda _request, _nth: (200, 0.0)
        super().__init__(
            _parse_push,
            lambda a, b: a.message_id == b.message_id and a.subscription == b.subscription,
            lambda record, nth: (*self.script(record, nth), {}),
            describe=lambda r: (r.subscription, r.message_id),
        )

    @property
    def requests(self) -> list[Received]:
        return self.records

    def to(self, subscription: str) -> list[Received]:
        return self.matching(lambda r: r.subscription == subscription)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    try:
        yield rec
    finally:
        rec.close()


BrokerFactory = Callable[..., Broker]


@pytest.fixture
def make_broker(engine: Engine, receiver: Receiver) -> Iterator[BrokerFactory]:
    made: list[Broker] = []

    def make(topology: Topology = TOPOLOGY, **kw: Any) -> Broker:
        kw.setdefault("project", PROJECT)
        broker = Broker(engine, topology, receiver.url, **kw)
        made.append(broker)
        return broker

    try:
        yield make
    finally:
        for broker in made:
            broker.stop(timeout=HANG_S)


@pytest.fixture
def broker(make_broker: BrokerFactory) -> Broker:
    started = make_broker()
    started.start()
    return started


def _count(subscription: str, n: int) -> Callable[[list[Received]], bool]:
    return lambda seen: sum(r.subscription == subscription for r in seen) >= n


def _settled(broker: Broker, subscription: str | None = None, timeout: float = HANG_S) -> None:
    deadline = time.monotonic() + timeout
    while broker.pending_count(subscription) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert broker.pending_count(subscription) == 0


RFC3339_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_envelope_matches_pubsub_push_format(broker: Broker, receiver: Receiver) -> None:
    before = datetime.now(UTC)
    message_id = broker.publish("orders", b"hello \x00\xff", {"source": "stripe"})
    seen = receiver.wait_for(lambda s: len(s) == 2)
    after = datetime.now(UTC)

    by_sub = {r.subscription: r for r in seen}
    assert set(by_sub) == {"billing", "shipping"}
    for name, request in by_sub.items():
        assert request.headers["Content-Type"] == "application/json"
        body = request.body
        assert body["subscription"] == f"projects/{PROJECT}/subscriptions/{name}"
        msg = body["message"]
        assert base64.b64decode(msg["data"]) == b"hello \x00\xff"
        assert msg["messageId"] == msg["message_id"] == message_id
        assert msg["publishTime"] == msg["publish_time"]
        assert RFC3339_MS_Z.match(msg["publishTime"])
        published = datetime.fromisoformat(msg["publishTime"].replace("Z", "+00:00"))
        # Milliseconds, truncated: at most 1 ms before the publish began.
        assert before - timedelta(milliseconds=1) <= published <= after
        assert msg["attributes"] == {"source": "stripe"}
        assert "orderingKey" not in msg
    assert by_sub["billing"].body["deliveryAttempt"] == 1
    assert "deliveryAttempt" not in by_sub["shipping"].body


def test_optional_fields_appear_only_when_set(broker: Broker, receiver: Receiver) -> None:
    broker.publish("plain", b"", {"only": "attributes"}, ordering_key="k1")
    broker.publish("plain", b"no attributes", {})
    seen = receiver.wait_for(lambda s: len(s) == 2)
    with_key, without = sorted(seen, key=lambda r: int(r.message_id))
    assert with_key.message["orderingKey"] == "k1"
    assert with_key.message["data"] == ""
    assert "attributes" not in without.message
    assert "orderingKey" not in without.message


def test_fan_out_gives_each_subscription_its_own_copy(broker: Broker, receiver: Receiver) -> None:
    receiver.script = lambda r, nth: (500 if r.subscription == "billing" and nth == 0 else 200, 0)
    message_id = broker.publish("orders", b"x", {})
    receiver.wait_for(_count("billing", 2))
    _settled(broker)
    assert [r.message_id for r in receiver.to("shipping")] == [message_id]
    assert [r.message_id for r in receiver.to("billing")] == [message_id, message_id]


def test_topic_without_subscriptions_stores_and_delivers_nothing(
    broker: Broker, receiver: Receiver, engine: Engine
) -> None:
    message_id = broker.publish("nobody-listens", b"x", {})
    with engine.connect() as conn:
        topic = conn.execute(
            sa.text("SELECT topic FROM emulator.messages WHERE id = :id"), {"id": int(message_id)}
        ).scalar_one()
    assert topic == "nobody-listens"
    assert broker.pending_count() == 0
    time.sleep(0.2)
    assert receiver.requests == []


def test_unknown_topic_is_not_found(make_broker: BrokerFactory) -> None:
    from common.errors import NotFound

    with pytest.raises(NotFound):
        make_broker().publish("no-such-topic", b"x", {})


def test_only_pubsub_ack_codes_ack(broker: Broker, receiver: Receiver) -> None:
    first_status: dict[str, int] = {}
    codes = [200, 201, 202, 204, 203, 205, 400, 404, 429, 500, 503]
    # The code travels in the data: a push may arrive before `publish` has returned its id.
    receiver.script = lambda r, nth: (
        int(base64.b64decode(r.message["data"])) if nth == 0 else 200,
        0,
    )
    for code in codes:
        first_status[broker.publish("plain", str(code).encode(), {})] = code
    nack_codes = [c for c in codes if c not in (200, 201, 202, 204)]
    receiver.wait_for(lambda s: len(s) >= len(codes) + len(nack_codes))
    _settled(broker)
    time.sleep(0.3)  # longer than the backoff: a wrongly nacked message would be back by now
    attempts = {code: 0 for code in codes}
    for request in receiver.requests:
        attempts[first_status[request.message_id]] += 1
    assert attempts == {code: 1 if code in (200, 201, 202, 204) else 2 for code in codes}
    # An HTTP/1.1 client never sees 102 as a final status, so it is checked here, not on the wire.
    assert 102 in ACK_STATUSES
    assert PushResult(102).acked
    assert not PushResult(203).acked
    assert not PushResult(200, "timeout").acked


def test_a_slow_endpoint_times_out_at_the_ack_deadline_and_is_redelivered(
    make_broker: BrokerFactory, receiver: Receiver
) -> None:
    redelivered = threading.Event()

    def script(request: Received, nth: int) -> tuple[int, float]:
        """The first push is answered only once the broker has given up on it and pushed
        again: however late the broker's timer fires, it can never see this 200."""
        if nth == 0:
            redelivered.wait(HANG_S)
        else:
            redelivered.set()
        return 200, 0.0

    receiver.script = script
    broker = make_broker(TIMEOUT_TOPOLOGY)
    broker.start()
    message_id = broker.publish("slow", b"x", {})
    first, second = receiver.wait_for(lambda s: len(s) == 2)
    assert first.message_id == second.message_id == message_id
    assert second.started - first.started >= 0.9
    _settled(broker)


def test_redelivery_keeps_message_id_counts_attempts_and_backs_off(
    broker: Broker, receiver: Receiver
) -> None:
    receiver.script = lambda r, nth: (500 if nth < 2 else 204, 0)
    message_id = broker.publish("slow", b"x", {"k": "v"})
    seen = receiver.wait_for(_count("patient", 3))
    _settled(broker)
    assert [r.message_id for r in seen] == [message_id] * 3
    assert [r.body["deliveryAttempt"] for r in seen] == [1, 2, 3]
    gaps = [later.started - earlier.ended for earlier, later in itertools.pairwise(seen)]
    # min 0.25 s doubling: 0.25 s after the first nack, 0.5 s after the second.
    assert gaps[0] >= 0.24
    assert gaps[1] >= 0.49


def test_dead_letters_after_max_delivery_attempts(
    broker: Broker, receiver: Receiver, engine: Engine
) -> None:
    receiver.script = lambda r, nth: (500 if r.subscription == "billing" else 200, 0)
    message_id = broker.publish("orders", b"poison", {"source": "stripe"}, ordering_key="acct")
    receiver.wait_for(_count("graveyard", 1))
    _settled(broker)

    attempts = receiver.to("billing")
    assert [r.body["deliveryAttempt"] for r in attempts] == [1, 2, 3, 4, 5]
    assert {r.message_id for r in attempts} == {message_id}
    (dead,) = receiver.to("graveyard")
    assert dead.message_id != message_id
    assert base64.b64decode(dead.message["data"]) == b"poison"
    attrs = dead.message["attributes"]
    published = datetime.fromisoformat(attempts[0].message["publishTime"].replace("Z", "+00:00"))
    assert attrs == {
        "source": "stripe",
        "CloudPubSubDeadLetterSourceDeliveryCount": "5",
        "CloudPubSubDeadLetterSourceSubscription": "billing",
        "CloudPubSubDeadLetterSourceSubscriptionProject": PROJECT,
        "CloudPubSubDeadLetterSourceTopicPublishTime": published.isoformat(timespec="milliseconds"),
    }
    with engine.connect() as conn:
        state = conn.execute(
            sa.text(
                "SELECT state, attempts FROM emulator.deliveries "
                "WHERE subscription = 'billing' AND message_id = :id"
            ),
            {"id": int(message_id)},
        ).one()
    assert tuple(state) == ("dead", 5)
    time.sleep(0.3)
    assert len(receiver.to("billing")) == 5


def test_messages_survive_a_restart(make_broker: BrokerFactory, receiver: Receiver) -> None:
    first = make_broker()
    first.start()
    first.stop()
    assert not first.pending_count()
    # Published while no dispatcher runs, as if the broker died right after the commit.
    message_id = first.publish("plain", b"durable", {})
    assert first.pending_count("plain") == 1

    second = make_broker()
    second.start()
    (request,) = receiver.wait_for(lambda s: len(s) == 1)
    assert request.message_id == message_id
    _settled(second)


def test_an_expired_lease_counts_as_an_attempt(
    make_broker: BrokerFactory, receiver: Receiver, engine: Engine
) -> None:
    publisher = make_broker()
    message_id = publisher.publish("orders", b"x", {})
    with engine.begin() as conn:  # a broker claims it, then dies before pushing
        claimed = store.claim(conn, {"billing": 0.3}, 10)
    assert [d.message_id for d in claimed] == [int(message_id)]

    broker = make_broker()
    broker.start()
    receiver.wait_for(_count("billing", 1))
    _settled(broker)
    (request,) = receiver.to("billing")
    assert request.body["deliveryAttempt"] == 2


def test_a_publish_from_another_broker_wakes_the_dispatcher(
    make_broker: BrokerFactory, receiver: Receiver
) -> None:
    idle = make_broker(max_idle_s=ASLEEP_S)
    idle.start()
    time.sleep(0.5)  # let the dispatcher find nothing and fall asleep
    publisher = make_broker()  # never started: only PostgreSQL NOTIFY connects the two
    message_id = publisher.publish("plain", b"x", {})
    (request,) = receiver.wait_for(lambda s: len(s) == 1)
    assert request.message_id == message_id


def test_a_raw_store_publish_wakes_the_dispatcher(
    make_broker: BrokerFactory, receiver: Receiver, engine: Engine
) -> None:
    idle = make_broker(max_idle_s=ASLEEP_S)
    idle.start()
    time.sleep(0.5)
    with engine.begin() as conn:
        (message_id,) = store.publish(
            conn, "plain", [(store.NewMessage(b"x"), TOPOLOGY.subscriptions_of("plain"))]
        )
    (request,) = receiver.wait_for(lambda s: len(s) == 1)
    assert request.message_id == str(message_id)


def test_a_publish_request_is_one_statement_with_its_deliveries(engine: Engine) -> None:
    """Messages, their deliveries and the NOTIFY in one round trip, ids in request order, and
    each subscription's copy keeps the ordering key only where ordering is enabled."""

    with engine.begin() as conn:
        store.install(conn)
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    sequenced = TOPOLOGY.subscriptions_of("sequenced")
    orders: list[Subscription] = TOPOLOGY.subscriptions_of("orders")
    request = [
        (store.NewMessage(b"a", {"n": "1"}, "k"), sequenced),
        (store.NewMessage(b"b", {"n": "2"}, "k"), [*sequenced, *orders]),
        (store.NewMessage(b"c", {"n": "3"}), []),
    ]
    with engine.begin() as conn:
        sa.event.listen(conn, "before_cursor_execute", record)
        ids = store.publish(conn, "sequenced", request)
        sa.event.remove(conn, "before_cursor_execute", record)
    assert len(statements) == 1
    assert ids == sorted(ids)
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT id, data, attributes FROM emulator.messages WHERE id = ANY(:ids)"),
            {"ids": ids},
        ).all()
        copies = conn.execute(
            sa.text(
                "SELECT message_id, subscription, ordering_key FROM emulator.deliveries "
                "WHERE message_id = ANY(:ids) ORDER BY message_id, subscription"
            ),
            {"ids": ids},
        ).all()
    assert sorted((bytes(r.data), r.attributes["n"]) for r in stored) == [
        (b"a", "1"), (b"b", "2"), (b"c", "3"),
    ]  # fmt: skip
    by_id = {r.id: bytes(r.data) for r in stored}
    assert [by_id[i] for i in ids] == [b"a", b"b", b"c"]
    assert [(by_id[c.message_id], c.subscription, c.ordering_key) for c in copies] == [
        (b"a", "sequencer", "k"),
        (b"b", "billing", ""),
        (b"b", "sequencer", "k"),
        (b"b", "shipping", ""),
    ]


def test_concurrent_pushes_are_bounded(make_broker: BrokerFactory, receiver: Receiver) -> None:
    arrivals = itertools.count()
    together = threading.Barrier(3, timeout=HANG_S)

    def script(request: Received, nth: int) -> tuple[int, float]:
        if next(arrivals) < 3:  # the first three are in flight at once, however slow we run
            with contextlib.suppress(threading.BrokenBarrierError):
                together.wait()
        return 200, 0.3

    receiver.script = script
    broker = make_broker(max_concurrent_pushes=3)
    for i in range(9):
        broker.publish("plain", str(i).encode(), {})
    broker.start()
    receiver.wait_for(lambda s: len(s) == 9 and all(r.ended for r in s))
    _settled(broker)
    assert receiver.max_active == 3


def test_two_brokers_on_one_database_never_push_a_delivery_twice(
    make_broker: BrokerFactory, receiver: Receiver
) -> None:
    receiver.script = lambda r, nth: (200, 0.05)
    one, two = make_broker(max_concurrent_pushes=4), make_broker(max_concurrent_pushes=4)
    one.start()
    two.start()
    ids = [one.publish("plain", str(i).encode(), {}) for i in range(30)]
    receiver.wait_for(lambda s: len(s) >= 30)
    _settled(one)
    time.sleep(0.2)
    assert sorted(r.message_id for r in receiver.requests) == sorted(ids)


def test_ordering_key_allows_one_outstanding_message_in_publish_order(
    broker: Broker, receiver: Receiver
) -> None:
    payload: dict[str, str] = {}
    # The first pushes of keys A and B meet here: if keys were serialised they never would,
    # and the overlap check below fails instead of depending on how fast the machine is.
    rendezvous = threading.Barrier(2, timeout=HANG_S)

    def script(request: Received, nth: int) -> tuple[int, float]:
        name = base64.b64decode(request.message["data"]).decode()  # not `payload`: not yet set
        if name in ("a1", "b1") and nth == 0:
            with contextlib.suppress(threading.BrokenBarrierError):
                rendezvous.wait()
        # The key's first message is nacked once: its later messages must wait for it.
        return 500 if name == "a1" and nth == 0 else 200, 0.1

    receiver.script = script
    for name, key in [("a1", "A"), ("b1", "B"), ("a2", "A"), ("u1", ""), ("b2", "B"), ("a3", "A")]:
        payload[broker.publish("sequenced", name.encode(), {}, ordering_key=key)] = name
    receiver.wait_for(lambda s: len(s) == 7 and all(r.ended for r in s))
    _settled(broker)

    def per_key(key: str) -> list[Received]:
        return sorted(
            (r for r in receiver.requests if r.message.get("orderingKey", "") == key),
            key=lambda r: r.started,
        )

    assert [payload[r.message_id] for r in per_key("A")] == ["a1", "a1", "a2", "a3"]
    assert [payload[r.message_id] for r in per_key("B")] == ["b1", "b2"]
    for key in ("A", "B"):
        requests = per_key(key)
        for earlier, later in itertools.pairwise(requests):
            assert later.started >= earlier.ended
    overlapping_keys = any(
        a.started < b.ended and b.started < a.ended for a in per_key("A") for b in per_key("B")
    )
    assert overlapping_keys, "different keys should be pushed concurrently"


def test_stop_wakes_the_sleeping_dispatcher_and_is_idempotent(make_broker: BrokerFactory) -> None:
    """Stop may wait as long as it likes for the dispatcher: only waking it ends the wait."""
    broker = make_broker(max_idle_s=ASLEEP_S)
    broker.start()
    time.sleep(0.2)

    def stop_twice() -> None:
        broker.stop(ASLEEP_S)
        broker.stop(ASLEEP_S)

    stopping = threading.Thread(target=stop_twice, daemon=True)
    stopping.start()
    stopping.join(HANG_S)
    assert not stopping.is_alive(), "stop waited for the dispatcher's idle sleep"
    with pytest.raises(RuntimeError):
        broker.start()


FILTERED_TOPOLOGY = Topology(
    topics=[Topic(name="events")],
    subscriptions=[
        _sub("ledger", "events", filter='attributes.source = "stripe"'),
        _sub("audit", "events"),
    ],
)


def test_a_filtered_subscription_never_receives_what_its_filter_rejects(
    make_broker: BrokerFactory, receiver: Receiver
) -> None:
    broker = make_broker(FILTERED_TOPOLOGY)
    broker.start()
    stripe_id = broker.publish("events", b"paid", {"source": "stripe"})
    github_id = broker.publish("events", b"pushed", {"source": "github"})
    receiver.wait_for(lambda s: _count("audit", 2)(s) and _count("ledger", 1)(s))
    # Settled means every delivery row was pushed and acked, so a stray one would show here.
    _settled(broker)
    assert [r.message_id for r in receiver.to("ledger")] == [stripe_id]
    assert sorted(r.message_id for r in receiver.to("audit")) == sorted([stripe_id, github_id])


DEAD_LETTER_FILTER_TOPOLOGY = Topology(
    topics=[Topic(name="orders"), Topic(name="orders-dead-letter")],
    subscriptions=[
        _sub(
            "billing",
            "orders",
            dead_letter_policy=DeadLetterPolicy(
                dead_letter_topic="orders-dead-letter", max_delivery_attempts=5
            ),
        ),
        _sub("graveyard", "orders-dead-letter"),
        _sub("stripe-graveyard", "orders-dead-letter", filter='attributes.source = "stripe"'),
        _sub(
            "billing-graveyard",
            "orders-dead-letter",
            filter='attributes.CloudPubSubDeadLetterSourceSubscription = "billing"',
        ),
    ],
)


def test_a_dead_lettered_copy_passes_the_filters_on_the_dead_letter_topic(
    make_broker: BrokerFactory, receiver: Receiver, engine: Engine
) -> None:
    """The copy is an ordinary message on its topic: a subscription whose filter rejects it
    never gets it, one that matches its CloudPubSubDeadLetter* attributes does."""
    receiver.script = lambda r, nth: (500 if r.subscription == "billing" else 200, 0)
    broker = make_broker(DEAD_LETTER_FILTER_TOPOLOGY)
    broker.start()
    broker.publish("orders", b"pushed", {"source": "github"})
    receiver.wait_for(lambda s: _count("graveyard", 1)(s) and _count("billing-graveyard", 1)(s))
    _settled(broker)

    (dead,) = receiver.to("graveyard")
    assert [r.message_id for r in receiver.to("billing-graveyard")] == [dead.message_id]
    assert receiver.to("stripe-graveyard") == []
    with engine.connect() as conn:
        copies = conn.execute(
            sa.text("SELECT subscription FROM emulator.deliveries WHERE message_id = :id"),
            {"id": int(dead.message_id)},
        ).scalars()
        assert sorted(copies) == ["billing-graveyard", "graveyard"]


NO_POLICY_TOPOLOGY = Topology(
    topics=[Topic(name="bare")],
    subscriptions=[_sub("bare", "bare", retry_policy=None)],
)
TINY_PUSH_BACKOFF = PushBackoff(initial_s=0.02, maximum_s=0.1)


@dataclass(frozen=True)
class Pause:
    streak: int
    seconds: float
    until: datetime


def _pause(engine: Engine, subscription: str) -> Pause | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT streak, EXTRACT(EPOCH FROM paused_until - paused_at), paused_until "
                "FROM emulator.push_backoff WHERE subscription = :s"
            ),
            {"s": subscription},
        ).one_or_none()
    return None if row is None else Pause(int(row[0]), float(row[1]), row[2])


def _claimed_at(engine: Engine, subscription: str, message_id: str) -> datetime:
    """When the broker last claimed the delivery for a push, by the database clock."""
    with engine.connect() as conn:
        claimed: datetime = conn.execute(
            sa.text(
                "SELECT last_attempt_at FROM emulator.deliveries "
                "WHERE subscription = :s AND message_id = :id"
            ),
            {"s": subscription, "id": int(message_id)},
        ).scalar_one()
    return claimed


def test_without_a_retry_policy_each_nack_in_a_row_pauses_the_subscription_longer(
    make_broker: BrokerFactory, receiver: Receiver, engine: Engine
) -> None:
    """Pub/Sub's push backoff, read from the schedule the broker stores: each push of the
    retried message is claimed only once the pause its previous nack set has ended."""
    seen: list[tuple[Pause | None, datetime]] = []

    def script(request: Received, nth: int) -> tuple[int, float]:
        seen.append((_pause(engine, "bare"), _claimed_at(engine, "bare", request.message_id)))
        return (500 if nth < 4 else 204), 0.0

    receiver.script = script
    broker = make_broker(NO_POLICY_TOPOLOGY, push_backoff=TINY_PUSH_BACKOFF)
    broker.start()
    broker.publish("bare", b"x", {})
    receiver.wait_for(_count("bare", 5))
    _settled(broker)

    first_pause, _ = seen[0]
    assert first_pause is None
    pauses = [pause for pause, _ in seen[1:]]
    assert [p.streak for p in pauses if p] == [1, 2, 3, 4]
    assert [p.seconds for p in pauses if p] == pytest.approx([0.02, 0.04, 0.08, 0.1])
    for pause, claimed in seen[1:]:
        assert pause is not None
        assert claimed >= pause.until
    after_ack = _pause(engine, "bare")
    assert after_ack is not None
    assert after_ack.streak == 0


def test_a_push_backoff_holds_back_every_message_of_the_subscription(
    make_broker: BrokerFactory, receiver: Receiver, engine: Engine
) -> None:
    """The first message's nack stops the subscription: the second, published during the
    pause, waits for its end like the nacked message's own retry."""

    def script(request: Received, nth: int) -> tuple[int, float]:
        nacked = base64.b64decode(request.message["data"]) == b"first" and nth == 0
        return (500 if nacked else 204), 0.0

    receiver.script = script
    broker = make_broker(NO_POLICY_TOPOLOGY, push_backoff=PushBackoff(0.3, 0.3))
    broker.start()
    first = broker.publish("bare", b"first", {})
    deadline = time.monotonic() + HANG_S
    while (pause := _pause(engine, "bare")) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pause is not None
    second = broker.publish("bare", b"second", {})
    receiver.wait_for(lambda s: len(s) == 3)
    _settled(broker)

    assert pause.streak == 1
    assert _claimed_at(engine, "bare", second) >= pause.until
    assert _claimed_at(engine, "bare", first) >= pause.until
