"""The emulator's Cloud Tasks v2 REST surface, the shape `common.messaging.tasks` speaks.

Mounted by the stack under `/emulator/tasks/`:

- `POST /emulator/tasks/v2/projects/{p}/locations/{l}/queues/{q}/tasks` with
  `{"task": {"name"?, "scheduleTime"?, "httpRequest": {"body": b64, "headers": {...}}}}`
  answers the created Task (BASIC view, so no body);
- `POST .../queues/{q}:pause`, `:resume`, `:purge` answer the Queue.

Errors use Google's JSON error shape, `{"error": {"code", "status", "message"}}`, rather
than problem JSON, because clients of this API branch on `status` (ALREADY_EXISTS).
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Any

import flask
from sqlalchemy.exc import SQLAlchemyError

from common import bounded_json
from common.errors import BadRequest, Conflict, NotFound, Problem
from common.http import json_response, read_body
from common.logging import get_logger
from common.messaging.tasks import TaskRequest, queue_path, rfc3339, valid_task_id
from common.storable import attributes_problem, datetime_problem
from common.topology import Queue
from hookyard.tasks.emulator import TaskEmulator
from hookyard.tasks.store import TaskRecord

log = get_logger(__name__)

_QUEUE = (
    r"/emulator/tasks/v2/projects/(?P<project>[^/:]+)/locations/(?P<location>[^/:]+)"
    r"/queues/(?P<queue>[^/:]+)"
)
_CREATE_PATH = re.compile(_QUEUE + r"/tasks")
_ACTION_PATH = re.compile(_QUEUE + r":(?P<action>pause|resume|purge)")
_RFC3339 = re.compile(
    r"(?P<second>\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d)(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<offset>[Zz]|[+-]\d\d:\d\d)"
)
# A 100 KB task, base64-inflated by 4/3, 80 KB of headers and the JSON around them.
_MAX_REQUEST_BYTES = 512 * 1024
_STATUS = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",
    503: "UNAVAILABLE",
}


def handle(emulator: TaskEmulator, request: flask.Request) -> flask.Response:
    try:
        return _route(emulator, request)
    except Problem as exc:
        return _error(exc.status, exc.detail)
    except SQLAlchemyError as exc:
        log.error("task emulator storage failed", error=type(exc).__name__)
        return _error(503, "the task emulator could not reach its database")


def _route(emulator: TaskEmulator, request: flask.Request) -> flask.Response:
    create = _CREATE_PATH.fullmatch(request.path)
    match = create or _ACTION_PATH.fullmatch(request.path)
    # Google's front end answers an unknown method on a resource as an unknown resource.
    if match is None or request.method != "POST":
        raise NotFound(f"{request.method} {request.path} is not a Cloud Tasks method")
    if (match["project"], match["location"]) != (emulator.project, emulator.location):
        raise NotFound(f"location projects/{match['project']}/locations/{match['location']}")
    queue = emulator.queue(match["queue"])
    parent = queue_path(emulator.project, emulator.location, queue.name)
    if create is None:
        action = match["action"]
        if action == "pause":
            emulator.pause(queue.name)
        elif action == "resume":
            emulator.resume(queue.name)
        else:
            emulator.purge(queue.name)
        return json_response({"name": parent, "state": emulator.queue_state(queue.name)})
    task = _parse_task(read_body(request, _MAX_REQUEST_BYTES), parent, queue.name)
    record = emulator.create(task)
    if record is None:
        raise Conflict("Requested entity already exists")
    return json_response(_task_json(emulator, queue, parent, record))


def _parse_task(raw: bytes, parent: str, queue: str) -> TaskRequest:
    try:
        doc = bounded_json.loads(raw)
    except bounded_json.JsonTooDeep as exc:
        raise BadRequest(f"request body: {exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("request body is not valid JSON") from exc
    task = doc.get("task") if isinstance(doc, dict) else None
    if not isinstance(task, dict):
        raise BadRequest("task must be an object")
    http_request = task.get("httpRequest")
    if not isinstance(http_request, dict):
        raise BadRequest("task.httpRequest must be an object")
    if http_request.get("httpMethod", "POST") != "POST":
        raise BadRequest("Hookyard tasks are POST requests")
    encoded = http_request.get("body", "")
    if not isinstance(encoded, str):
        raise BadRequest("task.httpRequest.body must be a base64 string")
    try:
        body = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise BadRequest("task.httpRequest.body is not valid base64") from exc
    headers = http_request.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise BadRequest("task.httpRequest.headers must map strings to strings")
    if (found := attributes_problem(headers)) is not None:
        raise BadRequest(f"task.httpRequest.headers: {found[1]}: {found[0]!r}")
    return TaskRequest(
        queue=queue,
        body=body,
        name=_task_id(task.get("name"), parent),
        headers=headers,
        schedule_time=_parse_time(task.get("scheduleTime")),
    )


def _task_id(name: Any, parent: str) -> str | None:
    """The ID out of a full task name, which must sit in the queue of the request's path."""
    if name is None or name == "":
        return None
    prefix = f"{parent}/tasks/"
    if not isinstance(name, str) or not name.startswith(prefix):
        raise BadRequest(f"task.name must be {prefix}TASK_ID")
    task_id = name.removeprefix(prefix)
    if not valid_task_id(task_id):
        raise BadRequest("task IDs are 1 to 500 of [A-Za-z0-9_-]")
    return task_id


def _parse_time(value: Any) -> datetime | None:
    """RFC 3339, nanoseconds allowed; kept to the microsecond PostgreSQL stores."""
    if value is None or value == "":
        return None
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise BadRequest("task.scheduleTime must be an RFC 3339 timestamp")
    offset = match["offset"].upper().replace("Z", "+00:00")
    fraction = (match["fraction"] or "0")[:6]
    try:
        moment = datetime.fromisoformat(f"{match['second'].upper()}.{fraction:0<6}{offset}")
    except ValueError as exc:
        raise BadRequest("task.scheduleTime is not a valid time") from exc
    if (reason := datetime_problem(moment)) is not None:
        raise BadRequest(f"task.scheduleTime {reason}")
    return moment


def _task_json(
    emulator: TaskEmulator, queue: Queue, parent: str, record: TaskRecord
) -> dict[str, Any]:
    return {
        "name": f"{parent}/tasks/{record.name}",
        "httpRequest": {"url": emulator.target_url(queue), "httpMethod": "POST"},
        "scheduleTime": rfc3339(record.schedule_time),
        "createTime": rfc3339(record.create_time),
        "dispatchDeadline": f"{queue.dispatch_deadline_s}s",
        "dispatchCount": record.dispatch_count,
        "responseCount": record.response_count,
        "view": "BASIC",
    }


def _error(code: int, message: str) -> flask.Response:
    status = _STATUS.get(code, "UNKNOWN")
    return json_response({"error": {"code": code, "status": status, "message": message}}, code)
