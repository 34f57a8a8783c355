"""The task emulator's Cloud Tasks v2 REST API, driven by the real `CloudTasksClient`.

One stack for the module, on real sockets: the production adapter `CloudTasksQueue` and a
bare `CloudTasksClient(transport="rest")` reach it through `api_endpoint`, exactly as they
reach Google, and what they create is dispatched over HTTP to the worker or to a receiver.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import flask
import httpx
import pytest
import sqlalchemy as sa
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth import jwt
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2
from sqlalchemy.engine import Engine
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from common.db import accounts, statements
from common.errors import PublishError
from common.messaging.cloud_tasks import CloudTasksQueue
from common.messaging.tasks import TaskRequest
from common.service_identity import LOCAL_CALLERS, LOCAL_CERTS_PATH
from hookyard.stack import LocalStack
from hookyard.tasks.rest_api import handler as rest_handler
from tests.support.postgres import TestServer
from tests.support.stack import module_stack, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROJECT, LOCATION = "local-project", "us-central1"
HANG_S = 60.0
LATER = timedelta(days=1)  # far enough ahead that a task stays put while a test looks at it


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Any HTTP target on 127.0.0.1: records every request, answers 204."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _app(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        with self._lock:
            self.seen.append(
                Seen(request.method, request.path, dict(request.headers), request.get_data())
            )
        return Response(status=204)(environ, start_response)

    def at(self, path: str) -> Seen:
        def found() -> Seen | None:
            with self._lock:
                return next((s for s in self.seen if s.path == path), None)

        seen: Seen = wait_for(found, HANG_S)
        return seen

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(HANG_S)
        self._server.server_close()


@pytest.fixture(scope="module")
def live(pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with module_stack(pg_server, tmp_path_factory.mktemp("tasks-rest")) as running:
        yield running


@pytest.fixture(scope="module")
def db(live: LocalStack) -> Engine:
    assert live.engine is not None
    return live.engine


@pytest.fixture(scope="module")
def client(live: LocalStack) -> Iterator[tasks_v2.CloudTasksClient]:
    tasks_client = tasks_v2.CloudTasksClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint=live.url),
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )
    try:
        yield tasks_client
    finally:
        tasks_client.transport.close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    target = Receiver()
    try:
        yield target
    finally:
        target.close()


def _adapter(live: LocalStack) -> CloudTasksQueue:
    return CloudTasksQueue(
        PROJECT, LOCATION, worker_url=live.url, service_account=LOCAL_CALLERS["tasks"],
        timeout_s=HANG_S, endpoint=live.url,
    )  # fmt: skip


def _queue(client: tasks_v2.CloudTasksClient, queue: str) -> str:
    return client.queue_path(PROJECT, LOCATION, queue)


def _task(client: tasks_v2.CloudTasksClient, queue: str, task_id: str) -> str:
    return client.task_path(PROJECT, LOCATION, queue, task_id)


def _google_status(exc: gexc.GoogleAPICallError) -> str:
    assert exc.response is not None
    status: str = exc.response.json()["error"]["status"]
    return status


def _claims(live: LocalStack, authorization: str) -> dict[str, Any]:
    certs = httpx.get(live.url + LOCAL_CERTS_PATH, timeout=HANG_S).json()
    scheme, _, token = authorization.partition(" ")
    assert scheme == "Bearer"
    claims: dict[str, Any] = jwt.decode(token, certs=certs, verify=True)  # type: ignore[no-untyped-call]
    return claims


def test_the_production_adapter_enqueues_through_the_client_and_the_worker_applies_it(
    live: LocalStack, db: Engine
) -> None:
    """The worker accepts only the tasks caller's token for its own URL: the task reached
    it at the URL the adapter named, with the token its oidc_token asked for."""
    with db.begin() as conn:
        assert accounts.create(conn, "acct_rest", "usd", None) is not None
    day = date(2026, 1, 15)
    body = json.dumps({"account_id": "acct_rest", "date": day.isoformat()}).encode()
    request = TaskRequest(
        "statements", body, "statement-rest-1", {"Content-Type": "application/json"}
    )
    queue = _adapter(live)

    assert queue.enqueue(request) is True
    assert queue.enqueue(request) is False  # ALREADY_EXISTS is "already enqueued"

    def written() -> bool:
        with db.connect() as conn:
            return statements.get(conn, "acct_rest", day) is not None

    wait_for(written, HANG_S)
    with pytest.raises(PublishError):
        queue.enqueue(TaskRequest("no-such-queue", b"{}", "x"))


def test_a_task_goes_where_its_http_request_says_with_the_token_it_asks_for(
    live: LocalStack, client: tasks_v2.CloudTasksClient, receiver: Receiver
) -> None:
    parent = _queue(client, "notifications")
    client.create_task(
        parent=parent,
        task={
            "http_request": {
                "url": receiver.url + "/put-here?x=1",
                "http_method": tasks_v2.HttpMethod.PUT,
                "headers": {"Content-Type": "text/plain", "X-Custom": "kept"},
                "body": b"put body",
                "oidc_token": {"service_account_email": "me@p.iam", "audience": "https://aud"},
            },
            "dispatch_deadline": timedelta(seconds=20),
        },
    )
    client.create_task(
        parent=parent,
        task={
            "http_request": {
                "url": receiver.url + "/default-audience",
                "body": b"\x00\xffraw",
                "oidc_token": {"service_account_email": "other@p.iam"},
            }
        },
    )
    client.create_task(
        parent=parent,
        task={"http_request": {"url": receiver.url + "/no-token", "http_method": "GET"}},
    )

    put = receiver.at("/put-here")
    assert (put.method, put.body) == ("PUT", b"put body")
    assert put.headers["X-Custom"] == "kept"
    assert put.headers["Content-Type"] == "text/plain"
    assert put.headers["X-Cloudtasks-Queuename"] == "notifications"
    claims = _claims(live, put.headers["Authorization"])
    assert (claims["email"], claims["aud"]) == ("me@p.iam", "https://aud")

    posted = receiver.at("/default-audience")
    assert (posted.method, posted.body) == ("POST", b"\x00\xffraw")
    assert posted.headers["Content-Type"] == "application/octet-stream"
    claims = _claims(live, posted.headers["Authorization"])
    assert (claims["email"], claims["aud"]) == ("other@p.iam", receiver.url + "/default-audience")

    fetched = receiver.at("/no-token")
    assert (fetched.method, fetched.body) == ("GET", b"")
    assert "Authorization" not in fetched.headers


def test_get_list_and_delete_tasks_through_the_client(
    client: tasks_v2.CloudTasksClient, receiver: Receiver
) -> None:
    parent = _queue(client, "replays")
    names = [_task(client, "replays", f"listed-{i}") for i in range(3)]
    for name in names:
        created = client.create_task(
            parent=parent,
            task={
                "name": name,
                "schedule_time": datetime.now(UTC) + LATER,
                "http_request": {
                    "url": receiver.url + "/later",
                    "headers": {"Content-Type": "application/json"},
                    "body": b'{"n": 1}',
                    "oidc_token": {"service_account_email": "me@p.iam"},
                },
            },
        )
        assert created.name == name
        assert created.http_request.body == b""  # BASIC, the default view

    basic = client.get_task(name=names[0])
    assert basic.view == tasks_v2.Task.View.BASIC
    assert basic.http_request.url == receiver.url + "/later"
    assert (basic.http_request.body, dict(basic.http_request.headers)) == (b"", {})
    assert basic.schedule_time > datetime.now(UTC)
    assert basic.dispatch_count == 0
    full = client.get_task(request={"name": names[0], "response_view": tasks_v2.Task.View.FULL})
    assert full.http_request.body == b'{"n": 1}'
    assert full.http_request.headers["Content-Type"] == "application/json"
    assert full.http_request.oidc_token.service_account_email == "me@p.iam"

    pages = list(client.list_tasks(request={"parent": parent, "page_size": 1}).pages)
    assert all(len(page.tasks) <= 1 for page in pages)
    listed = [task.name for page in pages for task in page.tasks]
    assert [n for n in listed if n in names] == names

    client.delete_task(name=names[1])
    with pytest.raises(gexc.NotFound):
        client.get_task(name=names[1])
    with pytest.raises(gexc.NotFound):
        client.delete_task(name=names[1])
    with pytest.raises(gexc.Conflict) as taken:  # the name stays taken after deletion
        client.create_task(
            parent=parent, task={"name": names[1], "http_request": {"url": receiver.url}}
        )
    assert _google_status(taken.value) == "ALREADY_EXISTS"
    assert [t.name for t in client.list_tasks(parent=parent)] == [names[0], names[2]]


def test_queue_operations_through_the_client(
    live: LocalStack, client: tasks_v2.CloudTasksClient, receiver: Receiver
) -> None:
    name = _queue(client, "statements")
    queue = client.get_queue(name=name)
    topology = live.topology.queue("statements")
    assert topology is not None
    assert queue.name == name
    assert queue.state == tasks_v2.Queue.State.RUNNING
    assert queue.rate_limits.max_concurrent_dispatches == (
        topology.rate_limits.max_concurrent_dispatches
    )
    assert queue.retry_config.max_attempts == topology.retry_config.max_attempts

    assert client.pause_queue(name=name).state == tasks_v2.Queue.State.PAUSED
    assert client.get_queue(name=name).state == tasks_v2.Queue.State.PAUSED
    task = client.create_task(parent=name, task={"http_request": {"url": receiver.url + "/x"}})
    purged = client.purge_queue(name=name)
    assert purged.state == tasks_v2.Queue.State.PAUSED
    assert purged.purge_time is not None
    with pytest.raises(gexc.NotFound):
        client.get_task(name=task.name)
    assert client.resume_queue(name=name).state == tasks_v2.Queue.State.RUNNING

    listed = [q.name for q in client.list_queues(parent=f"projects/{PROJECT}/locations/{LOCATION}")]
    assert listed == sorted(_queue(client, q.name) for q in live.topology.queues)


def test_errors_are_google_errors_the_client_raises(
    client: tasks_v2.CloudTasksClient, receiver: Receiver
) -> None:
    """Over REST the client raises the HTTP status's class (409 is `Conflict`, 400
    `BadRequest`); Google's status in the error body names the gRPC code."""
    with pytest.raises(gexc.NotFound):
        client.get_queue(name=_queue(client, "no-such-queue"))
    with pytest.raises(gexc.NotFound):
        client.create_task(
            parent=_queue(client, "no-such-queue"), task={"http_request": {"url": receiver.url}}
        )
    with pytest.raises(gexc.NotFound):
        client.get_task(name=_task(client, "jobs", "never-created"))
    with pytest.raises(gexc.BadRequest) as invalid:
        client.create_task(
            parent=_queue(client, "jobs"),
            task={"name": _task(client, "jobs", "bad.name"), "http_request": {"url": receiver.url}},
        )
    assert _google_status(invalid.value) == "INVALID_ARGUMENT"
    with pytest.raises(gexc.BadRequest):
        client.create_task(parent=_queue(client, "jobs"), task={"http_request": {"url": "ftp://x"}})


def _v2(path: str) -> str:
    return f"/v2/projects/{PROJECT}/locations/{LOCATION}/queues/{path}"


TASKS = _v2("notifications/tasks")
NAMES = f"projects/{PROJECT}/locations/{LOCATION}/queues/notifications/tasks/"


def _with(task: str, **outside: str) -> bytes:
    """A CreateTask body: `task` is the Task object's inside, as JSON text."""
    rest = "".join(f', "{key}": {value}' for key, value in outside.items())
    return ('{"task": {' + task + "}" + rest + "}").encode()


def _http(fields: str = "", task: str = "") -> bytes:
    """A task whose http_request has a valid url plus `fields`, and `task` beside it."""
    inner = '"url": "http://x"' + (", " + fields if fields else "")
    return _with('"httpRequest": {' + inner + "}" + (", " + task if task else ""))


HOSTILE: list[tuple[str, str, dict[str, str], bytes]] = [
    ("POST", TASKS, {}, b"{not json"),
    ("POST", TASKS, {}, b'{"task": {"name": "\xff\xfe"}}'),
    ("POST", TASKS, {}, b'{"task": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("POST", TASKS, {}, _http('"body": "' + "A" * 700_000 + '"')),
    ("POST", TASKS, {}, b"[]"),
    ("POST", TASKS, {}, _http(task='"unknownField": 1')),
    ("POST", TASKS, {}, _http('"bogus": true')),
    ("POST", TASKS, {}, _http(task=f'"name": "{NAMES}a b"')),
    ("POST", TASKS, {}, _http(task=f'"name": "{NAMES.replace(PROJECT, "other")}ok"')),
    ("POST", TASKS, {}, _http(task='"scheduleTime": "tomorrow"')),
    ("POST", TASKS, {}, _http(task='"scheduleTime": "2999-01-01T00:00:00Z"')),
    ("POST", TASKS, {}, _http(task='"scheduleTime": "10000-01-01T00:00:00Z"')),
    ("POST", TASKS, {}, _http(task='"scheduleTime": 12')),
    ("POST", TASKS, {}, _http(task='"dispatchDeadline": "5s"')),
    ("POST", TASKS, {}, _with('"httpRequest": {"url": "http://x\\u0000y"}')),
    ("POST", TASKS, {}, _http('"headers": {"X": "\\ud800"}')),
    ("POST", TASKS, {}, _http('"headers": {"X": "a\\r\\nb"}')),
    ("POST", TASKS, {}, _http('"httpMethod": "GET", "body": "eA=="')),
    ("POST", TASKS, {}, _http('"httpMethod": 99')),
    ("POST", TASKS, {}, _http('"body": "not base64!"')),
    ("POST", TASKS, {}, _with('"httpRequest": {"url": "http://x:99999/"}')),
    ("POST", TASKS, {}, _with('"httpRequest": {"url": "/relative"}')),
    ("POST", TASKS, {}, _http('"oauthToken": {"serviceAccountEmail": "a@b"}')),
    ("POST", TASKS, {}, _http('"oidcToken": {"audience": "a"}')),
    ("POST", TASKS, {}, _with('"appEngineHttpRequest": {"relativeUri": "/x"}')),
    ("POST", TASKS, {}, _with("")),
    ("POST", TASKS, {}, _with('"httpRequest": {"url": "http://x"}', responseView="7")),
    ("POST", TASKS, {"Content-Type": "text/plain"}, _http()),
    ("GET", TASKS + "?pageToken=%%%", {}, b""),
    ("GET", TASKS + "?pageSize=-1", {}, b""),
    ("GET", TASKS + "?pageSize=x", {}, b""),
    ("GET", TASKS + "?pageSize=1&pageSize=2", {}, b""),
    ("GET", TASKS + "?bogus=1", {}, b""),
    ("GET", TASKS + "/bad.name", {}, b""),
    ("GET", _v2("notifications:frobnicate"), {}, b""),
    ("PATCH", _v2("notifications"), {}, b"{}"),
    ("GET", f"/v2/projects/other/locations/{LOCATION}/queues/notifications", {}, b""),
]


def _rows(db: Engine, queue: str) -> int:
    """Every row the queue has, tombstones included: a task that ran still counts."""
    with db.connect() as conn:
        count = conn.execute(
            sa.text("SELECT count(*) FROM emulator.tasks WHERE queue = :queue"), {"queue": queue}
        ).scalar_one()
    return int(count)


def test_hostile_input_is_a_google_4xx_and_creates_nothing(live: LocalStack, db: Engine) -> None:
    before = _rows(db, "notifications")
    with httpx.Client(base_url=live.url, timeout=HANG_S) as http:
        for method, path, headers, body in HOSTILE:
            sent = {"Content-Type": "application/json", **headers}
            response = http.request(method, path, content=body or None, headers=sent)
            case = f"{method} {path[:80]} {body[:80]!r}"
            assert 400 <= response.status_code < 500, case
            error = response.json()["error"]
            assert error["code"] == response.status_code, case
            assert error["status"] in {"INVALID_ARGUMENT", "NOT_FOUND"}, case
            assert error["message"], case
    assert _rows(db, "notifications") == before


def test_only_loopback_callers_and_no_cross_site_browser(live: LocalStack) -> None:
    assert live.tasks is not None
    app = flask.Flask("peer-test")
    with app.test_request_context(_v2("jobs"), environ_base={"REMOTE_ADDR": "192.0.2.7"}):
        refused = rest_handler(live.tasks)(flask.request)
    assert refused.status_code == 403
    assert refused.get_json()["error"]["status"] == "PERMISSION_DENIED"

    with httpx.Client(base_url=live.url, timeout=HANG_S) as http:
        browser = http.get(_v2("jobs"), headers={"Sec-Fetch-Site": "cross-site"})
        assert browser.status_code == 403
        assert browser.json()["error"]["status"] == "PERMISSION_DENIED"
        foreign = http.get(_v2("jobs"), headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403
        # No token is needed, and one that is present is not even looked at.
        ignored = http.get(_v2("jobs"), headers={"Authorization": "Bearer not-a-token"})
        assert ignored.status_code == 200
        assert ignored.json()["name"] == f"projects/{PROJECT}/locations/{LOCATION}/queues/jobs"
