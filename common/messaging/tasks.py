"""Enqueuing Cloud Tasks HTTP tasks: the interface callers depend on, and its local transport.

Every Hookyard task is a named POST to the worker's `/tasks/{queue}`; the queue decides the
target, so a caller only says which queue, what body and which name. A name is the
de-duplication key: Cloud Tasks refuses it (ALREADY_EXISTS) while the task exists and for
about an hour after it ran or was deleted, which callers treat as "already enqueued".
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from common.errors import PublishError
from common.lazy import Lazy
from common.oidc import TokenProvider

_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")
# A refused connection means the request never arrived, so repeating it cannot create the
# task twice; any later failure might have, and is left to the caller.
_RECONNECT = Retrying(
    retry=retry_if_exception_type(httpx.ConnectError),
    stop=stop_after_attempt(3),
    wait=wait_exponential(multiplier=0.05, max=0.5),
    reraise=True,
)


@dataclass(frozen=True, slots=True)
class TaskRequest:
    queue: str
    body: bytes
    name: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    schedule_time: datetime | None = None


class TaskQueue(Protocol):
    def enqueue(self, task: TaskRequest) -> bool:
        """True when created; False when the name exists or ran/was deleted within the
        tombstone window (ALREADY_EXISTS, which callers treat as success). Other failures
        raise common.errors.PublishError."""
        ...


def valid_task_id(name: str) -> bool:
    """Cloud Tasks' documented task ID syntax; anything else is INVALID_ARGUMENT there."""
    return _TASK_ID.fullmatch(name) is not None


def queue_path(project: str, location: str, queue: str) -> str:
    return f"projects/{project}/locations/{location}/queues/{queue}"


def create_task_path(project: str, location: str, queue: str) -> str:
    """Where the emulator serves `CreateTask`, under the stack's `/emulator/tasks` mount."""
    return f"/emulator/tasks/v2/{queue_path(project, location, queue)}/tasks"


def rfc3339(moment: datetime) -> str:
    """UTC with a `Z`, as Google's JSON APIs write timestamps."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class LocalTaskQueue:
    """`TaskQueue` over HTTP to the local emulator, in the Cloud Tasks v2 REST shape;
    `token` supplies the bearer token the emulator's API requires (the stack's own)."""

    def __init__(
        self,
        base_url: str,
        project: str,
        location: str,
        timeout_s: float,
        token: TokenProvider | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._project = project
        self._location = location
        self._timeout = timeout_s
        self._token = token
        # Shared by every thread: a client per call would pay for a new pool each time.
        self._client = Lazy(lambda: httpx.Client(base_url=self._base, timeout=self._timeout))

    def enqueue(self, task: TaskRequest) -> bool:
        if task.name is not None and not valid_task_id(task.name):
            raise PublishError("task names are 1 to 500 of [A-Za-z0-9_-]")
        if task.schedule_time is not None and task.schedule_time.utcoffset() is None:
            raise PublishError("schedule_time must be timezone-aware")
        path = create_task_path(self._project, self._location, task.queue)
        headers = {"Authorization": f"Bearer {self._token()}"} if self._token else None
        try:
            # A copy per call: a Retrying keeps per-run state.
            response = _RECONNECT.copy()(
                self._client.get().post, path, json=self._payload(task), headers=headers
            )
        except httpx.HTTPError as exc:
            raise PublishError(f"local task emulator unreachable: {type(exc).__name__}") from exc
        if response.status_code == 200:
            return True
        if response.status_code == 409:
            return False
        raise PublishError(
            f"local task emulator answered {response.status_code}: {_error_message(response)}"
        )

    def _payload(self, task: TaskRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "httpRequest": {
                "httpMethod": "POST",
                "body": base64.b64encode(task.body).decode("ascii"),
                "headers": dict(task.headers),
            }
        }
        if task.name is not None:
            parent = queue_path(self._project, self._location, task.queue)
            body["name"] = f"{parent}/tasks/{task.name}"
        if task.schedule_time is not None:
            body["scheduleTime"] = rfc3339(task.schedule_time)
        return {"task": body}


def _error_message(response: httpx.Response) -> str:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return response.reason_phrase
    return str(message)
