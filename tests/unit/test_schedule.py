from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.errors import BadRequest
from common.job_tasks import job_task, parse_job_task, stamp
from common.topology import Job, SchedulerRetryConfig
from functions.cron import parse_schedule_time
from hookyard.scheduler import next_tick, retry_delay_s, scheduler_headers


def test_next_tick_follows_the_zone_across_dst() -> None:
    job = Job(name="nightly", schedule="0 2 * * *", time_zone="America/New_York")
    before_dst = next_tick(job, datetime(2026, 3, 7, 12, tzinfo=UTC))
    after_dst = next_tick(job, datetime(2026, 3, 9, 12, tzinfo=UTC))
    assert before_dst == datetime(2026, 3, 8, 7, tzinfo=UTC)  # 02:00 EST
    assert after_dst == datetime(2026, 3, 10, 6, tzinfo=UTC)  # 02:00 EDT


def test_next_tick_is_strictly_after_and_overrides_may_use_seconds() -> None:
    job = Job(name="relay", schedule="* * * * *")
    at = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert next_tick(job, at) == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert next_tick(job, at, "* * * * * */2") == datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC)


def test_schedule_time_parsing_normalises_to_utc() -> None:
    assert parse_schedule_time("2026-10-16T05:00:00-07:00", 0) == datetime(
        2026, 10, 16, 12, tzinfo=UTC
    )
    assert parse_schedule_time("2026-10-16T12:00:00Z", 0) == datetime(2026, 10, 16, 12, tzinfo=UTC)
    assert parse_schedule_time(None, 1_700_000_059.9) == datetime(2023, 11, 14, 22, 14, tzinfo=UTC)
    for bad in ("yesterday", "2026-10-16T12:00:00"):
        with pytest.raises(BadRequest):
            parse_schedule_time(bad, 0)


def test_job_task_names_are_valid_task_ids_and_round_trip() -> None:
    when = datetime(2026, 10, 16, 12, 0, 0, tzinfo=UTC)
    task = job_task("daily-balances", when, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    assert task.name == "daily-balances-20261016T120000Z"
    assert task.queue == "jobs"
    assert parse_job_task(task.body) == ("daily-balances", when)
    assert stamp(when) == "20261016T120000Z"
    headers = scheduler_headers("reconcile", when)
    assert headers["X-CloudScheduler-ScheduleTime"] == "2026-10-16T12:00:00Z"
    assert headers["X-CloudScheduler"] == "true"


@pytest.mark.parametrize("schedule", ["* * * *", "61 * * * *", "every 5 minutes"])
def test_invalid_schedules_are_refused(schedule: str) -> None:
    with pytest.raises(ValueError, match="unix-cron"):
        Job(name="x", schedule=schedule)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        Job(name="x", schedule="* * * * *", time_zone="Mars/Olympus")


def _retries(config: SchedulerRetryConfig, attempt_s: float = 0.0) -> list[float]:
    """The waits of a run that always fails, each attempt taking `attempt_s`."""
    waits: list[float] = []
    elapsed = attempt_s
    while (delay := retry_delay_s(config, len(waits), elapsed)) is not None:
        waits.append(delay)
        elapsed += delay + attempt_s
        assert len(waits) < 100, "never stops"
    return waits


@pytest.mark.parametrize(
    ("doublings", "waits"),
    [(5, [10, 20, 40, 80, 160]), (3, [10, 20, 40, 80, 160]), (1, [10, 20, 40, 60, 80]),
     (0, [10, 20, 30, 40, 50])],
)  # fmt: skip
def test_retries_double_max_doublings_times_then_grow_linearly(
    doublings: int, waits: list[float]
) -> None:
    config = SchedulerRetryConfig(
        retry_count=5, min_backoff_s=10, max_backoff_s=300, max_doublings=doublings
    )
    assert _retries(config) == waits


def test_the_documented_example_caps_at_max_backoff() -> None:
    """10 s, 300 s, 3 doublings: 10, 20, 40, 80, 160, 240, 300, 300 (the API reference)."""
    config = SchedulerRetryConfig(
        retry_count=5, max_retry_duration_s=900, min_backoff_s=10, max_backoff_s=300,
        max_doublings=3,
    )  # fmt: skip
    assert _retries(config) == [10, 20, 40, 80, 160, 240, 300, 300]


def test_no_retry_count_and_no_duration_means_no_retry() -> None:
    assert _retries(SchedulerRetryConfig()) == []


def test_a_duration_alone_retries_until_it_has_passed() -> None:
    config = SchedulerRetryConfig(retry_count=0, max_retry_duration_s=60, min_backoff_s=10)
    assert _retries(config) == [10, 20, 40]  # failed at 0, 10, 30 and 70 s: 70 >= 60


def test_both_limits_must_be_reached() -> None:
    config = SchedulerRetryConfig(retry_count=2, max_retry_duration_s=100, min_backoff_s=10)
    assert _retries(config) == [10, 20, 40, 80]  # 2 retries by 30 s; the duration by 150 s
    short = SchedulerRetryConfig(retry_count=4, max_retry_duration_s=1, min_backoff_s=10)
    assert _retries(short) == [10, 20, 40, 80]  # the duration passed long before the count


def test_the_duration_counts_time_spent_in_attempts() -> None:
    config = SchedulerRetryConfig(retry_count=0, max_retry_duration_s=60, min_backoff_s=10)
    assert _retries(config, attempt_s=20) == [10, 20]  # failed at 20, 50 and 90 s
