"""`POST /cron/{job}`: a Cloud Scheduler tick becomes exactly one named task.

Scheduler delivers at least once, sometimes twice or late; the task name
`{job}-{schedule time}` turns every repeat of one tick into ALREADY_EXISTS (200, "already
scheduled"), so the job runs once per schedule time. No database: it stays small and fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Request, Response

from common.errors import BadRequest, NotFound, Problem, PublishError, ServiceUnavailable
from common.http import (
    json_response,
    path_parts,
    problem_response,
    read_body,
    reject_cross_site,
    require_json_body,
    require_method,
)
from common.job_tasks import job_task, stamp
from common.logging import bind_context, get_logger
from common.messaging.tasks import TaskQueue
from common.oidc import CallerVerifier
from common.storable import datetime_problem
from common.topology import Topology
from common.tracing import new_trace, parse_trace

log = get_logger(__name__)

PREFIX = "/cron"
SCHEDULE_HEADER = "X-CloudScheduler-ScheduleTime"
# Jobs compute days around their schedule time: keep a margin from datetime's limits.
EARLIEST_SCHEDULE = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_SCHEDULE = datetime(9999, 1, 1, tzinfo=UTC)
MAX_CRON_BODY_BYTES = 64 * 1024
"""Scheduler sends these jobs no body (infra/ configures none) and the tick reads none, but
a surface without a limit would take a body of any size: this is far above a manual `{}`."""


def parse_schedule_time(raw: str | None, now: float) -> datetime:
    """RFC 3339, possibly with an offset; normalised to UTC. Absent (a manual run, or an
    `every N minutes` schedule): now, truncated to the minute, as the tick would have been."""
    if raw is None or not raw.strip():
        return datetime.fromtimestamp(now, UTC).replace(second=0, microsecond=0)
    try:
        moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"{SCHEDULE_HEADER} is not RFC 3339", field=SCHEDULE_HEADER) from exc
    if moment.tzinfo is None:
        raise BadRequest(f"{SCHEDULE_HEADER} needs a UTC offset", field=SCHEDULE_HEADER)
    if datetime_problem(moment) is not None or not (
        EARLIEST_SCHEDULE <= moment.astimezone(UTC) < LATEST_SCHEDULE
    ):
        raise BadRequest(
            f"{SCHEDULE_HEADER} must fall in the years 1970 to 9998 (UTC)", field=SCHEDULE_HEADER
        )
    return moment.astimezone(UTC)


@dataclass
class CronIngest:
    topology: Topology
    tasks_factory: Callable[[], TaskQueue]
    verifier: CallerVerifier
    project: str = "local-project"
    clock: Callable[[], float] = time.time

    def handle(self, request: Request) -> Response:
        trace = parse_trace(request.headers) or new_trace()
        parts = path_parts(request, PREFIX)
        bind_context(trace, self.project, job=parts[0] if parts else None)
        try:
            reject_cross_site(request)
            self.verifier.verify(request)
            require_json_body(request)
            if len(parts) != 1:
                raise NotFound("no such cron endpoint")
            job = self.topology.job(parts[0])
            if job is None:
                raise NotFound(f"unknown job {parts[0]!r}")
            require_method(request, "POST")
            read_body(request, MAX_CRON_BODY_BYTES)
            when = parse_schedule_time(request.headers.get(SCHEDULE_HEADER), self.clock())
            task = job_task(job.name, when, trace.traceparent)
            try:
                created = self.tasks_factory().enqueue(task)
            except PublishError as exc:
                log.error("job could not be enqueued", error=str(exc))
                raise ServiceUnavailable("the job could not be queued; retry later") from exc
        except Problem as problem:
            return problem_response(problem, request.path)
        body = {
            "status": "scheduled" if created else "already scheduled",
            "job": job.name,
            "schedule_time": when.isoformat().replace("+00:00", "Z"),
            "task": task.name,
        }
        log.info("cron tick", status=body["status"], schedule_time=stamp(when))
        return json_response(body, status=202 if created else 200)
