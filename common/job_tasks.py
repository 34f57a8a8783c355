"""The contract between the cron function, which turns a Scheduler tick into a task, and the
worker that runs the job: queue `jobs`, one task named `{job}-{schedule time}` per tick."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from common import bounded_json
from common.errors import PermanentError
from common.messaging.tasks import TaskRequest
from common.storable import datetime_problem

JOBS_QUEUE = "jobs"


def stamp(moment: datetime) -> str:
    """Task IDs allow no `:`, `.` or `+`: `20261016T120000Z`."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def job_task(job: str, schedule_time: datetime, traceparent: str | None = None) -> TaskRequest:
    headers = {"Content-Type": "application/json"}
    if traceparent:
        headers["traceparent"] = traceparent
    body = {"job": job, "schedule_time": schedule_time.astimezone(UTC).isoformat()}
    return TaskRequest(
        queue=JOBS_QUEUE,
        name=f"{job}-{stamp(schedule_time)}",
        body=json.dumps(body).encode(),
        headers=headers,
    )


def parse_job_task(body: bytes) -> tuple[str, datetime]:
    try:
        doc = bounded_json.loads(body)
        when = datetime.fromisoformat(doc["schedule_time"])
        job = doc["job"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentError("job task body needs job and schedule_time") from exc
    if not isinstance(job, str) or when.tzinfo is None:
        raise PermanentError("job task body needs a job name and an aware schedule_time")
    if (reason := datetime_problem(when)) is not None:
        raise PermanentError(f"job task schedule_time {reason}")
    return job, when.astimezone(UTC)
