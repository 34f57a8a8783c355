"""The local Cloud Scheduler's retries, against a real HTTP target that keeps failing.

Time is the scheduler's own injected clock, moved only by its waits: what the test reads is
the schedule of waits the scheduler asked for, never how long anything took.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from common.topology import Job, Queue, SchedulerRetryConfig, Topology
from hookyard.scheduler import LocalScheduler
from tests.support.scripted_server import ScriptedServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

START = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
NEXT_TICK = START + timedelta(days=1)


@dataclass
class Tick:
    schedule_time: str
    started: float = 0.0
    ended: float = 0.0


@dataclass
class FakeTime:
    now: float = START.timestamp()
    waits: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


class Target(ScriptedServer[Tick]):
    """`/cron/{job}` answering 500 to the first `failures` attempts, 200 after."""

    def __init__(self) -> None:
        self.failures = 1000
        super().__init__(
            lambda request: Tick(request.headers.get("X-CloudScheduler-ScheduleTime", "")),
            lambda _a, _b: True,
            lambda _tick, nth: (500 if nth < self.failures else 200, 0.0, {}),
        )


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    try:
        yield server
    finally:
        server.close()


def _attempts(target: Target, config: SchedulerRetryConfig) -> tuple[bool, list[float]]:
    job = Job(name="nightly", schedule="0 2 * * *", retry_config=config)
    topology = Topology(topics=[], queues=[Queue(name="jobs")], jobs=[job])
    time = FakeTime()
    scheduler = LocalScheduler(topology, target.url, clock=time.clock, sleep=time.sleep)
    try:
        succeeded = scheduler.run("nightly", START, NEXT_TICK)
    finally:
        scheduler.stop()
    assert len(target.records) == len(time.waits) + 1
    assert {t.schedule_time for t in target.records} == {"2026-03-01T02:00:00Z"}
    return succeeded, time.waits


def test_retries_grow_linearly_after_max_doublings(target: Target) -> None:
    config = SchedulerRetryConfig(
        retry_count=5, min_backoff_s=10, max_backoff_s=300, max_doublings=1
    )
    assert _attempts(target, config) == (False, [10, 20, 40, 60, 80])


def test_a_max_retry_duration_keeps_retrying_until_it_has_passed(target: Target) -> None:
    """Until both limits are reached: two retries are spent by 30 s, the 100 s by 150 s."""
    config = SchedulerRetryConfig(retry_count=2, max_retry_duration_s=100, min_backoff_s=10)
    assert _attempts(target, config) == (False, [10, 20, 40, 80])


def test_retries_stop_at_the_next_tick_and_at_success(target: Target) -> None:
    config = SchedulerRetryConfig(
        retry_count=0, max_retry_duration_s=7 * 86400, min_backoff_s=3600,
        max_backoff_s=86400, max_doublings=5,
    )  # fmt: skip
    # Failed at 0, 1, 3, 7 and 15 h: a wait of 16 h more would run past the next tick.
    assert _attempts(target, config) == (False, [3600, 7200, 14400, 28800])

    target.records.clear()
    target.failures = 2
    assert _attempts(target, config) == (True, [3600, 7200])
