from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.errors import BadRequest
from common.job_tasks import job_task, parse_job_task, stamp
from common.topology import Job
from functions.cron import parse_schedule_time
from hookyard.scheduler import next_tick, scheduler_headers


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
