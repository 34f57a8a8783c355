"""A replay batch whose publish fails for a while: nothing leaves the replay, nothing is
counted as failed, and the retried task finishes the batch and carries the chain on."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from common.db import dead_letters, replays
from common.errors import PublishError, TransientError
from common.messaging.publisher import OutboundMessage
from common.messaging.tasks import TaskRequest
from common.topology import load_topology
from tests.support.dead_letter_seeds import seed_dead_letters
from workers.replay import ReplayRunner

SEEDED = 30


class BrokerDownFor:
    """The first `failures` publish calls fail as an unreachable broker does."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.published: list[OutboundMessage] = []

    def publish(
        self, topic: str, data: bytes, attributes: dict[str, str], ordering_key: str = ""
    ) -> str:
        return self.publish_many(topic, [OutboundMessage(data, attributes, ordering_key)])[0]

    def publish_many(self, topic: str, messages: Sequence[OutboundMessage]) -> list[str]:
        if self.failures:
            self.failures -= 1
            raise PublishError("local broker unreachable: ConnectError")
        self.published.extend(messages)
        return [str(len(self.published) - n) for n in range(len(messages))]


class Chain:
    def __init__(self) -> None:
        self.tasks: list[TaskRequest] = []

    def enqueue(self, task: TaskRequest) -> bool:
        self.tasks.append(task)
        return True


def _start(engine: Engine, rate: int) -> int:
    seed_dead_letters(engine, SEEDED, "flaky-broker")
    with engine.begin() as conn:
        replay_id = replays.create(
            conn, max_per_second=rate, reason="test", actor="test", selection={}
        )
        total = dead_letters.claim_for_replay(
            conn, dead_letters.Selection(reason="flaky-broker"), replay_id
        )
        replays.set_total(conn, replay_id, total)
    return replay_id


def _states(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT state, count(*) FROM dead_letters GROUP BY 1")).all()
    return {state: int(n) for state, n in rows}


def _body(replay_id: int, seq: int) -> bytes:
    return json.dumps({"replay_id": replay_id, "seq": seq}).encode()


def test_an_unreachable_broker_asks_for_a_retry_and_loses_nothing(engine: Engine) -> None:
    replay_id = _start(engine, rate=SEEDED)
    broker, chain = BrokerDownFor(failures=2), Chain()
    runner = ReplayRunner(engine, load_topology(), broker, chain)

    for _ in range(2):
        with pytest.raises(TransientError, match="30 messages not republished"):
            runner(_body(replay_id, 0))
        assert _states(engine) == {"replaying": SEEDED}
        assert chain.tasks == []
    with engine.connect() as conn:
        replay = replays.get(conn, replay_id)
    assert replay is not None
    assert (replay.done, replay.failed, replay.state) == (0, 0, "running")

    runner(_body(replay_id, 0))
    assert _states(engine) == {"replayed": SEEDED}
    assert [task.name for task in chain.tasks] == [f"replay-{replay_id}-1"]
    assert len({m.attributes["hookyard_replay_of"] for m in broker.published}) == SEEDED

    runner(_body(replay_id, 1))
    with engine.connect() as conn:
        replay = replays.get(conn, replay_id)
    assert replay is not None
    assert (replay.done, replay.failed, replay.state) == (SEEDED, 0, "done")


def test_a_row_whose_subscription_left_the_topology_goes_back_to_pending(
    engine: Engine,
) -> None:
    replay_id = _start(engine, rate=SEEDED)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE dead_letters SET subscription = 'gone' WHERE message_id = 'm1'")
        )
    broker, chain = BrokerDownFor(failures=0), Chain()
    ReplayRunner(engine, load_topology(), broker, chain)(_body(replay_id, 0))
    assert _states(engine) == {"replayed": SEEDED - 1, "pending": 1}
    with engine.connect() as conn:
        replay = replays.get(conn, replay_id)
    assert replay is not None
    assert (replay.done, replay.failed) == (SEEDED - 1, 1)
