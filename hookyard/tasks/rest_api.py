"""Cloud Tasks v2 REST at Google's own paths, for `CloudTasksClient(transport="rest")`.

Mounted by the stack under `/v2/`, so a client given the stack's URL as `api_endpoint`
talks to the emulator exactly as to `cloudtasks.googleapis.com`: CreateTask, GetTask,
DeleteTask, ListTasks, GetQueue, ListQueues, PauseQueue, ResumeQueue, PurgeQueue.
Requests and responses are the protos' JSON mapping (`google.protobuf.json_format` over
`google.cloud.tasks_v2` messages), so a field the client library sends and this module does
not know is refused rather than silently dropped. Errors are Google's JSON error shape,
`{"error": {"code", "status", "message"}}`; the REST client turns the HTTP code into its
exception class.

No credentials, as Google's emulators: loopback callers only.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import flask
from google.cloud.tasks_v2.types import cloudtasks, target
from google.cloud.tasks_v2.types import queue as queue_types
from google.cloud.tasks_v2.types import task as task_types
from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message import Message  # type: ignore[import-untyped]
from sqlalchemy.exc import SQLAlchemyError

from common import bounded_json
from common.errors import BadRequest, Conflict, NotFound, Problem
from common.http import json_response, read_body, require_json_body
from common.logging import get_logger
from common.messaging.tasks import TaskRequest, queue_path, valid_task_id
from common.storable import datetime_problem, text_problem
from common.topology import Queue
from hookyard.emulator_access import require_local_caller
from hookyard.tasks.dispatcher import BODY_METHODS
from hookyard.tasks.emulator import TaskEmulator
from hookyard.tasks.store import HttpTarget, TaskRecord

log = get_logger(__name__)

_LOCATION = r"/v2/projects/(?P<project>[^/:]+)/locations/(?P<location>[^/:]+)"
_QUEUE = _LOCATION + r"/queues/(?P<queue>[^/:]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(_LOCATION + r"/queues"), "list_queues"),
    ("GET", re.compile(_QUEUE), "get_queue"),
    ("POST", re.compile(_QUEUE + r":(?P<action>pause|resume|purge)"), "queue_action"),
    ("POST", re.compile(_QUEUE + r"/tasks"), "create_task"),
    ("GET", re.compile(_QUEUE + r"/tasks"), "list_tasks"),
    ("GET", re.compile(_QUEUE + r"/tasks/(?P<task>[^/:]+)"), "get_task"),
    ("DELETE", re.compile(_QUEUE + r"/tasks/(?P<task>[^/:]+)"), "delete_task"),
]
# A 100 KB task, base64-inflated by 4/3, 80 KB of headers and the JSON around them.
MAX_REQUEST_BYTES = 512 * 1024
MAX_PAGE_SIZE = 1000
MAX_URL_LENGTH = 2083
# Cloud Tasks' bounds on an HTTP task's dispatch deadline.
MIN_DEADLINE_S, MAX_DEADLINE_S = 15, 1800
# Query parameters of the transport itself, not of the request message.
_TRANSPORT_PARAMS = frozenset({"$alt", "alt", "prettyPrint", "$prettyPrint"})
_METHODS = {
    target.HttpMethod.HTTP_METHOD_UNSPECIFIED: "POST",
    target.HttpMethod.POST: "POST",
    target.HttpMethod.GET: "GET",
    target.HttpMethod.HEAD: "HEAD",
    target.HttpMethod.PUT: "PUT",
    target.HttpMethod.DELETE: "DELETE",
    target.HttpMethod.PATCH: "PATCH",
    target.HttpMethod.OPTIONS: "OPTIONS",
}
_METHOD_ENUM = {name: value for value, name in _METHODS.items() if value}
_VIEWS: dict[int, int] = {
    0: task_types.Task.View.BASIC,
    1: task_types.Task.View.BASIC,
    2: task_types.Task.View.FULL,
}
_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    503: "UNAVAILABLE",
}
# The emulator's queues have no other states (no DISABLED): what GetQueue reports.
_QUEUE_STATES = {
    "RUNNING": queue_types.Queue.State.RUNNING,
    "PAUSED": queue_types.Queue.State.PAUSED,
}

M = TypeVar("M", bound=Message)
_UNKNOWN_FIELD = re.compile(r'has no field named "([^"]{1,100})"')
_FIELD_CHAIN = re.compile(r"Failed to parse (\w{1,64}) field")
_AT_PATH = re.compile(r' at "?([A-Za-z][\w.\[\]-]{0,200})"?\.?(?:\s|$)')


def handler(emulator: TaskEmulator) -> Callable[[flask.Request], flask.Response]:
    """The stack's `v2` mount."""

    def handle(request: flask.Request) -> flask.Response:
        try:
            require_local_caller(request)
            return _route(emulator, request)
        except Problem as exc:
            return _error(exc)
        except SQLAlchemyError as exc:
            log.error("task emulator storage failed", error=type(exc).__name__)
            return _error(Problem("the task emulator could not reach its database"), 503)

    return handle


def _route(emulator: TaskEmulator, request: flask.Request) -> flask.Response:
    for method, pattern, operation in _ROUTES:
        match = pattern.fullmatch(request.path)
        if match is None or request.method != method:
            continue
        if (match["project"], match["location"]) != (emulator.project, emulator.location):
            raise NotFound(f"location projects/{match['project']}/locations/{match['location']}")
        api = _Api(emulator, request, match.groupdict())
        result: dict[str, Any] = getattr(api, operation)()
        return json_response(result)
    # Google's front end answers a method it does not serve on a path as an unknown resource.
    raise NotFound(f"{request.method} {request.path} is not a Cloud Tasks method")


class _Api:
    """One request: its path's names, its query and its body, as Cloud Tasks reads them."""

    def __init__(self, emulator: TaskEmulator, request: flask.Request, path: dict[str, Any]):
        self.emulator = emulator
        self.request = request
        self.path = path

    # Queues

    def list_queues(self) -> dict[str, Any]:
        query = self._query(cloudtasks.ListQueuesRequest.pb()())
        if query.filter:
            raise BadRequest("filter is not supported by the emulator")
        queues = sorted(self.emulator.queues(), key=lambda q: q.name)
        page, next_token = _page(queues, lambda q: q.name, query.page_size, query.page_token)
        body: dict[str, Any] = {"queues": [self._queue_json(q) for q in page]}
        if next_token:
            body["nextPageToken"] = next_token
        return body

    def get_queue(self) -> dict[str, Any]:
        self._query(cloudtasks.GetQueueRequest.pb()())
        return self._queue_json(self.emulator.queue(self.path["queue"]))

    def queue_action(self) -> dict[str, Any]:
        self._body(cloudtasks.PauseQueueRequest.pb()())  # the three take only the path's name
        name = self.emulator.queue(self.path["queue"]).name
        action = self.path["action"]
        if action == "pause":
            self.emulator.pause(name)
        elif action == "resume":
            self.emulator.resume(name)
        else:
            self.emulator.purge(name)
        return self._queue_json(self.emulator.queue(name))

    # Tasks

    def create_task(self) -> dict[str, Any]:
        queue = self.emulator.queue(self.path["queue"])
        parent = self._parent(queue)
        request = self._body(cloudtasks.CreateTaskRequest.pb()())
        view = _view(request.response_view)
        task, http_target = _task_request(request.task, parent, queue.name)
        record = self.emulator.create(task, http_target)
        if record is None:
            raise Conflict("Requested entity already exists")
        return self._task_json(queue, record, view)

    def get_task(self) -> dict[str, Any]:
        queue = self.emulator.queue(self.path["queue"])
        view = _view(self._query(cloudtasks.GetTaskRequest.pb()()).response_view)
        task_id = _path_task_id(self.path["task"])
        return self._task_json(queue, self.emulator.get_task(queue.name, task_id), view)

    def delete_task(self) -> dict[str, Any]:
        queue = self.emulator.queue(self.path["queue"])
        self._query(cloudtasks.DeleteTaskRequest.pb()())
        self.emulator.delete_task(queue.name, _path_task_id(self.path["task"]))
        return {}

    def list_tasks(self) -> dict[str, Any]:
        queue = self.emulator.queue(self.path["queue"])
        query = self._query(cloudtasks.ListTasksRequest.pb()())
        view = _view(query.response_view)
        size = _page_size(query.page_size)
        after = _after(query.page_token)
        records = self.emulator.list_tasks(queue.name, after, size + 1)
        body: dict[str, Any] = {
            "tasks": [self._task_json(queue, record, view) for record in records[:size]]
        }
        if len(records) > size:
            body["nextPageToken"] = _token(records[size - 1].name)
        return body

    # Reading requests

    def _query(self, message: M) -> M:
        """The query string into the request message, as the REST transport flattens it."""
        params: dict[str, str] = {}
        for key in self.request.args:
            if key in _TRANSPORT_PARAMS:
                continue
            values = self.request.args.getlist(key)
            if len(values) != 1:
                raise BadRequest(f"query parameter {key} given {len(values)} times")
            params[key] = values[0]
        return _parse(params, message, "query")

    def _body(self, message: M) -> M:
        require_json_body(self.request)
        raw = read_body(self.request, MAX_REQUEST_BYTES)
        if not raw.strip():
            return message
        try:
            doc = bounded_json.loads(raw)
        except bounded_json.JsonTooDeep as exc:
            raise BadRequest(f"request body: {exc}") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest("request body is not valid JSON") from exc
        if not isinstance(doc, dict):
            raise BadRequest("request body must be a JSON object")
        return _parse(doc, message, "request body")

    def _parent(self, queue: Queue) -> str:
        return queue_path(self.emulator.project, self.emulator.location, queue.name)

    # Writing responses

    def _queue_json(self, queue: Queue) -> dict[str, Any]:
        state, purge_time = self.emulator.queue_status(queue.name)
        rate, retry = queue.rate_limits, queue.retry_config
        message = queue_types.Queue(
            name=self._parent(queue),
            rate_limits=queue_types.RateLimits(
                max_dispatches_per_second=rate.max_dispatches_per_second,
                max_burst_size=rate.burst,
                max_concurrent_dispatches=rate.max_concurrent_dispatches,
            ),
            retry_config=queue_types.RetryConfig(
                max_attempts=retry.max_attempts,
                max_retry_duration=_duration(retry.max_retry_duration_s),
                min_backoff=_duration(retry.min_backoff_s),
                max_backoff=_duration(retry.max_backoff_s),
                max_doublings=retry.max_doublings,
            ),
            state=_QUEUE_STATES[state],
            purge_time=purge_time,
        )
        return _to_json(queue_types.Queue.pb(message))

    def _task_json(self, queue: Queue, record: TaskRecord, view: int) -> dict[str, Any]:
        """BASIC leaves out what may be large or sensitive (body, headers, token request)."""
        http = record.target or HttpTarget(self.emulator.target_url(queue))
        fields: dict[str, Any] = {"url": http.url, "http_method": _METHOD_ENUM[http.http_method]}
        if view == task_types.Task.View.FULL:
            fields.update(headers=record.headers, body=record.body)
            if http.oidc_email is not None:
                fields["oidc_token"] = target.OidcToken(
                    service_account_email=http.oidc_email, audience=http.oidc_audience or ""
                )
        http_request = target.HttpRequest(**fields)
        message = task_types.Task(
            name=f"{self._parent(queue)}/tasks/{record.name}",
            http_request=http_request,
            schedule_time=record.schedule_time,
            create_time=record.create_time,
            dispatch_deadline=_duration(http.dispatch_deadline_s or queue.dispatch_deadline_s),
            dispatch_count=record.dispatch_count,
            response_count=record.response_count,
            view=view,
        )
        if record.first_attempt_at is not None:
            message.first_attempt = task_types.Attempt(dispatch_time=record.first_attempt_at)
        if record.last_attempt_at is not None:
            message.last_attempt = task_types.Attempt(dispatch_time=record.last_attempt_at)
        return _to_json(task_types.Task.pb(message))


def _task_request(task: Message, parent: str, queue: str) -> tuple[TaskRequest, HttpTarget]:
    """What CreateTask's task says, checked as Cloud Tasks checks it (INVALID_ARGUMENT)."""
    pb: Any = task
    if pb.HasField("app_engine_http_request"):
        raise BadRequest("App Engine tasks are not emulated: give task.http_request")
    if not pb.HasField("http_request"):
        raise BadRequest("task.http_request is required")
    http = pb.http_request
    url = _url(http.url)
    method = _METHODS.get(http.http_method)
    if method is None:
        raise BadRequest("task.http_request.http_method is not an HTTP method")
    body = bytes(http.body)
    if body and method not in BODY_METHODS:
        raise BadRequest(f"a {method} task cannot have a body")
    if http.HasField("oauth_token"):
        raise BadRequest("oauth_token is not emulated: Google access tokens exist only in GCP")
    headers = dict(http.headers)
    if body and not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = "application/octet-stream"  # as Cloud Tasks sets it
    email = audience = None
    if http.HasField("oidc_token"):
        email = _text(http.oidc_token.service_account_email, "oidc_token.service_account_email")
        if not email:
            raise BadRequest("task.http_request.oidc_token.service_account_email is required")
        audience = _text(http.oidc_token.audience, "oidc_token.audience") or None
    deadline_s = None
    if pb.HasField("dispatch_deadline"):
        seconds = pb.dispatch_deadline.seconds + pb.dispatch_deadline.nanos / 1e9
        if not MIN_DEADLINE_S <= seconds <= MAX_DEADLINE_S:
            raise BadRequest(
                f"task.dispatch_deadline must be {MIN_DEADLINE_S}s to {MAX_DEADLINE_S}s"
            )
        deadline_s = int(seconds)
    return (
        TaskRequest(
            queue=queue,
            body=body,
            name=_task_id(pb.name, parent),
            headers=headers,
            schedule_time=_schedule_time(pb) if pb.HasField("schedule_time") else None,
        ),
        HttpTarget(url, method, email, audience, deadline_s),
    )


def _url(value: str) -> str:
    url = _text(value, "http_request.url")
    if not url:
        raise BadRequest("task.http_request.url is required")
    if len(url) > MAX_URL_LENGTH:
        raise BadRequest(f"task.http_request.url is at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        valid = parts.scheme in {"http", "https"} and bool(parts.hostname)
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError:
        valid = False
    if not valid or not url.isascii() or any(c.isspace() for c in url):
        raise BadRequest("task.http_request.url must be an absolute http(s) URL")
    return url


def _text(value: str, field: str) -> str:
    if (reason := text_problem(value)) is not None:
        raise BadRequest(f"task.{field} {reason}")
    return value


def _task_id(name: str, parent: str) -> str | None:
    """The ID out of a full task name, which must sit in the queue of the request's path."""
    if not name:
        return None
    prefix = f"{parent}/tasks/"
    if not name.startswith(prefix):
        raise BadRequest(f"task.name must be {prefix}TASK_ID")
    task_id = name.removeprefix(prefix)
    if not valid_task_id(task_id):
        raise BadRequest("task IDs are 1 to 500 of [A-Za-z0-9_-]")
    return task_id


def _path_task_id(task_id: str) -> str:
    if not valid_task_id(task_id):
        raise BadRequest("task IDs are 1 to 500 of [A-Za-z0-9_-]")
    return task_id


def _schedule_time(task: Any) -> datetime:
    """Kept to the microsecond PostgreSQL stores."""
    try:
        moment: datetime = task.schedule_time.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise BadRequest("task.schedule_time is not a valid time") from exc
    if (reason := datetime_problem(moment)) is not None:
        raise BadRequest(f"task.schedule_time {reason}")
    return moment


def _view(value: int) -> int:
    view = _VIEWS.get(int(value))
    if view is None:
        raise BadRequest("response_view must be BASIC or FULL")
    return view


def _page_size(value: int) -> int:
    if value < 0:
        raise BadRequest("page_size must not be negative")
    return min(value or MAX_PAGE_SIZE, MAX_PAGE_SIZE)


def _page(
    items: list[Queue], key: Callable[[Queue], str], size: int, token: str
) -> tuple[list[Queue], str | None]:
    after = _after(token)
    rest = [item for item in items if key(item) > after]
    limit = _page_size(size)
    return rest[:limit], _token(key(rest[limit - 1])) if len(rest) > limit else None


def _token(last: str) -> str:
    """Opaque to clients: the last name of the page, which the next one starts after."""
    return base64.urlsafe_b64encode(last.encode("ascii")).decode("ascii")


def _after(token: str) -> str:
    if not token:
        return ""
    try:
        last = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise BadRequest("page_token is not one this API returned") from exc
    if not valid_task_id(last):
        raise BadRequest("page_token is not one this API returned")
    return last


def _duration(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def _parse(doc: dict[str, Any], message: M, where: str) -> M:
    """Unknown fields are refused (INVALID_ARGUMENT), as Google's front end refuses them."""
    try:
        json_format.ParseDict(doc, message)
    except (json_format.ParseError, TypeError, ValueError, RecursionError) as exc:
        raise BadRequest(f"{where}: {_reason(exc)}") from exc
    return message


def _reason(exc: Exception) -> str:
    """Where the parser stopped and why in a word, never the value it read (which may be
    a header's token)."""
    if not isinstance(exc, json_format.ParseError):
        return f"cannot be read ({type(exc).__name__})"
    text = str(exc)
    unknown = _UNKNOWN_FIELD.search(text)
    where = _AT_PATH.search(text)
    fields = ".".join(_FIELD_CHAIN.findall(text))
    path = _printable(where[1].rstrip(".") if where else fields or "the request")
    if unknown:
        return f"unknown field {_printable(unknown[1])!r} in {path}"
    return f"invalid value at {path}"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


def _to_json(message: Message) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(message)
    return result


def _error(exc: Problem, code: int | None = None) -> flask.Response:
    status = code or exc.status
    google_status = str(exc.extensions.get("google_status") or _STATUS.get(status, "UNKNOWN"))
    headers = {"Connection": "close"} if exc.close_connection else None
    body = {"error": {"code": status, "status": google_status, "message": exc.detail}}
    return json_response(body, status, headers)
