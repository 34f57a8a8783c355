"""`POST /tasks/{queue}`: one Cloud Tasks HTTP task.

2xx deletes the task. Cloud Tasks has no dead-letter queue, it just deletes a task whose
retries ran out, so the last attempt's failure is recorded in `dead_letters` here and
answered 2xx. Earlier failures answer 500 and the queue retries with its backoff: not 503,
which Cloud Tasks also takes as a reason to throttle the whole queue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from flask import Request, Response
from sqlalchemy.engine import Engine

from common import metrics, spans
from common.db import dead_letters
from common.db.sqlstate import as_permanent
from common.errors import BadRequest, NotFound, PermanentError, Problem, RetryLater
from common.http import (
    empty_response,
    path_parts,
    problem_response,
    read_body,
    reject_cross_site,
    require_json_body,
    require_method,
)
from common.logging import bind_context, get_logger
from common.oidc import CallerVerifier, NoCallers
from common.storable import parse_bounded_int
from common.topology import Topology
from common.tracing import parse_trace

log = get_logger(__name__)

PREFIX = "/tasks"
MAX_COUNT = 2**31 - 1
MAX_TASK_BYTES = 1024 * 1024
"""Cloud Tasks caps a task at 100 KB (1 MB for HTTP tasks by some accounts): far above."""
TaskHandler = Callable[[bytes], None]
TaskOutcome = Literal["done", "dead_letter"]


@dataclass
class TaskWorker:
    engine: Engine
    topology: Topology
    handlers: Mapping[str, TaskHandler] = field(default_factory=dict)
    project: str = "local-project"
    verifier: CallerVerifier = field(default_factory=NoCallers)
    """Without one, every task over HTTP is refused."""

    def handle(self, request: Request) -> Response:
        parts = path_parts(request, PREFIX)
        try:
            reject_cross_site(request)
            self.verifier.verify(request)
            require_json_body(request)
            require_method(request, "POST")
            if len(parts) != 1 or parts[0] not in self.handlers:
                raise NotFound("no such task queue")
            queue = self.topology.queue(parts[0])
            if queue is None:
                raise NotFound(f"queue {parts[0]!r} is not in the topology")
            retry_count = _int_header(request, "X-CloudTasks-TaskRetryCount")
        except Problem as problem:
            label = metrics.bounded_name(parts[0] if len(parts) == 1 else None, self.handlers)
            metrics.task_attempt(label, "rejected")
            return problem_response(problem, request.path)
        outcome = "retry"
        with spans.span(f"task {queue.name}", parse_trace(request.headers), "consumer") as trace:
            try:
                task_name = request.headers.get("X-CloudTasks-TaskName", "")
                bind_context(
                    trace, self.project,
                    queue=queue.name, task_name=task_name, retry_count=retry_count,
                )  # fmt: skip
                body = read_body(request, MAX_TASK_BYTES)
                last = queue.retry_config.max_attempts != -1 and (
                    retry_count + 1 >= queue.retry_config.max_attempts
                )
                outcome = self._run(queue.name, task_name, retry_count, body, last_attempt=last)
            except Problem as problem:
                outcome = "rejected" if problem.status < 500 else "retry"
                return problem_response(problem, request.path)
            finally:
                spans.set_attribute("hookyard.outcome", outcome)
                metrics.task_attempt(queue.name, outcome, retry_count)
        return empty_response(204)

    def _run(
        self, queue: str, task: str, retry_count: int, body: bytes, *, last_attempt: bool
    ) -> TaskOutcome:
        """`done`, or `dead_letter` once stored; else raises for a retry."""
        try:
            self.handlers[queue](body)
        except PermanentError as exc:
            self._dead_letter(queue, task, retry_count, body, exc)
            return "dead_letter"
        except Exception as exc:
            if (permanent := as_permanent(exc)) is not None:
                self._dead_letter(queue, task, retry_count, body, permanent)
                return "dead_letter"
            if last_attempt:
                self._dead_letter(queue, task, retry_count, body, exc)
                return "dead_letter"
            log.warning("task failed; the queue will retry", error_class=type(exc).__name__,
                        error=str(exc)[:500])  # fmt: skip
            raise RetryLater("task failed; retry later") from exc
        return "done"

    def _dead_letter(
        self, queue: str, task: str, retry_count: int, body: bytes, exc: Exception
    ) -> None:
        reason = exc.reason if isinstance(exc, PermanentError) else str(exc)[:2000]
        with self.engine.begin() as conn:
            dead_letter_id = dead_letters.record(
                conn,
                origin="worker",
                subscription=f"tasks/{queue}",
                message_id=task or "unnamed",
                data=body,
                attributes={"queue": queue, "task_name": task},
                delivery_count=retry_count + 1,
                error_class=type(exc).__name__,
                error_message=reason,
            )
        log.warning("task dead-lettered", reason=reason, dead_letter_id=dead_letter_id)


def _int_header(request: Request, name: str) -> int:
    value = parse_bounded_int(request.headers.get(name, "0"))
    if value is None or value > MAX_COUNT:
        raise BadRequest(f"{name} must be an integer from 0 to {MAX_COUNT}", field=name)
    return value
