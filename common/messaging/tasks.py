"""Enqueuing Cloud Tasks HTTP tasks: the interface callers depend on.

Every Hookyard task is a named POST to the worker's `/tasks/{queue}`; the queue decides the
target, so a caller only says which queue, what body and which name. A name is the
de-duplication key: Cloud Tasks refuses it (ALREADY_EXISTS) while the task exists and for
about an hour after it ran or was deleted, which callers treat as "already enqueued".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")


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
