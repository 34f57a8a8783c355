"""Runs an operator's replay as a chain of tasks on queue `replays`, one batch per task.

Each task republishes up to a second's worth of dead letters (`max_per_second`) to the
subscription they came from (attribute `replay_to`: the topic's other subscriptions filter
it out, so the event's other handlers never see it again), marks them replayed and
schedules the next batch one second after this one started, so the rate holds without a
long-running process: it works the same on Cloud Run, where nothing may run after the
response. Cancelling flips the replay's state; the next
batch sees it and stops, and the rows it never reached go back to `pending`.

A broker or queue that is briefly unreachable does not shrink the replay: what was republished
is committed, the rest stays `replaying`, and the task asks for a retry, which picks those rows
up again. Only a row that can never be republished (its subscription left the topology) goes
back to `pending` and counts as failed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from common import bounded_json, metrics
from common.db import dead_letters, replays
from common.db.dead_letters import REPLAY_ID, REPLAY_OF, DeadLetter
from common.errors import PermanentError, PublishError, TransientError
from common.logging import get_logger
from common.messaging.publisher import OutboundMessage, Publisher
from common.messaging.tasks import TaskQueue, TaskRequest
from common.replay_tasks import batch_task
from common.topology import REPLAY_TO, Topology

log = get_logger(__name__)

MAX_BATCH = 1000


@dataclass(slots=True)
class _BatchOutcome:
    published: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)


class ReplayRunner:
    def __init__(
        self,
        engine: Engine,
        topology: Topology,
        publisher: Publisher,
        tasks: TaskQueue,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._topology = topology
        self._publisher = publisher
        self._tasks = tasks
        self._clock = clock

    def __call__(self, body: bytes) -> None:
        try:
            doc = bounded_json.loads(body)
            replay_id, seq = int(doc["replay_id"]), int(doc["seq"])
        except (ValueError, KeyError, TypeError, OverflowError) as exc:  # Overflow: 1e999
            raise PermanentError("replay task body needs replay_id and seq") from exc
        started = self._clock()
        with self._engine.begin() as conn:
            # Lock order replays -> dead_letters, as cancel takes them: no deadlock, and a
            # cancel that committed is seen here before anything is published.
            replay = replays.get(conn, replay_id, lock=True)
            if replay is None or replay.state != "running":
                return
            batch = max(1, min(MAX_BATCH, int(replay.max_per_second)))
            rows = dead_letters.next_to_replay(conn, replay_id, batch)
            if not rows:
                replays.finish(conn, replay_id, "done")
                log.info("replay finished", replay_id=replay_id)
                return
            outcome = self._republish(rows, replay_id)
            if outcome.published:
                dead_letters.mark_replayed(conn, outcome.published)
            if outcome.failed:
                dead_letters.release_ids(conn, outcome.failed)
            replays.progress(conn, replay_id, len(outcome.published), len(outcome.failed))
        metrics.replay_progress(len(outcome.published), len(outcome.failed))
        log.info("replay batch", replay_id=replay_id, seq=seq, published=len(outcome.published),
                 failed=len(outcome.failed), retry=len(outcome.retry))  # fmt: skip
        if outcome.retry:
            raise TransientError(
                f"replay {replay_id} batch {seq}: {len(outcome.retry)} messages not republished"
            )
        pause = timedelta(seconds=len(rows) / replay.max_per_second)
        self._tasks.enqueue(batch_task(replay_id, seq + 1, started + pause))

    def _republish(self, rows: list[DeadLetter], replay_id: int) -> _BatchOutcome:
        """Groups by destination so each topic gets one publish call per batch."""
        by_topic: dict[str, list[DeadLetter]] = defaultdict(list)
        outcome = _BatchOutcome()
        for row in rows:
            if row.subscription.startswith("tasks/"):
                done = self._requeue(row, replay_id)
                (outcome.published if done else outcome.retry).append(row.id)
                continue
            subscription = self._topology.subscription(row.subscription)
            if subscription is None:
                outcome.failed.append(row.id)
                continue
            by_topic[subscription.topic].append(row)
        for topic, group in by_topic.items():
            messages = [
                OutboundMessage(
                    row.data,
                    {
                        **row.attributes,
                        REPLAY_OF: str(row.id),
                        REPLAY_ID: str(replay_id),
                        REPLAY_TO: row.subscription,
                    },
                )
                for row in group
            ]
            try:
                self._publisher.publish_many(topic, [_strip_dead_letter_attrs(m) for m in messages])
                outcome.published.extend(row.id for row in group)
            except PublishError as exc:
                log.warning("replay publish failed", topic=topic, error=str(exc))
                outcome.retry.extend(row.id for row in group)
        return outcome

    def _requeue(self, row: DeadLetter, replay_id: int) -> bool:
        queue = row.subscription.removeprefix("tasks/")
        try:
            self._tasks.enqueue(
                TaskRequest(
                    queue=queue,
                    name=f"{row.message_id}-replay-{replay_id}"[:500],
                    body=row.data,
                    headers={"Content-Type": "application/json"},
                )
            )
        except PublishError as exc:
            log.warning("replay enqueue failed", queue=queue, error=str(exc))
            return False
        return True


def _strip_dead_letter_attrs(message: OutboundMessage) -> OutboundMessage:
    """The broker's CloudPubSubDeadLetter* attributes describe the old failure, not this one."""
    kept = {
        k: v for k, v in message.attributes.items() if not k.startswith("CloudPubSubDeadLetter")
    }
    return OutboundMessage(message.data, kept, message.ordering_key)
