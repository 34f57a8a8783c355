"""`CloudTasksQueue` against a real `CloudTasksClient` and an in-process gRPC fake.

Nothing here mocks the client: the adapter gets a real `tasks_v2.CloudTasksClient` over an
insecure channel to `tests.support.grpc_fakes.fake_cloud_tasks`, which speaks the
`google.cloud.tasks.v2.CloudTasks` wire protocol and records every `CreateTaskRequest`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from common.errors import PublishError
from common.messaging.cloud_tasks import CloudTasksQueue
from common.messaging.tasks import TaskRequest
from tests.support.google_credentials import without_google_credentials
from tests.support.grpc_fakes import Fail, FakeCloudTasks, Hold, fake_cloud_tasks
from tests.support.stack import free_port

# Every call here takes well under a second or two; a regression that waits on a retry fails
# on this bound instead of hanging the suite, and a busy machine never reaches it.
pytestmark = pytest.mark.timeout(120)

# The deadline of a call whose timing is not under test: only a hang reaches it.
GENEROUS_S = 60.0
# Longer than the test may run: a call that waited for it fails on the test's timeout,
# which is how "at once" is checked without timing anything.
UNREACHABLE_S = 3600.0

WORKER_URL = "https://worker-abc123-ew.a.run.app"
SERVICE_ACCOUNT = "tasks-invoker@p.iam.gserviceaccount.com"
QUEUE_PATH = "projects/p/locations/l/queues/notifications"
TASK_URL = f"{WORKER_URL}/tasks/notifications"


@pytest.fixture
def fake() -> Iterator[FakeCloudTasks]:
    with fake_cloud_tasks() as tasks:
        yield tasks


@pytest.fixture
def client(fake: FakeCloudTasks) -> Iterator[tasks_v2.CloudTasksClient]:
    channel = grpc.insecure_channel(fake.address)
    tasks_client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    try:
        yield tasks_client
    finally:
        tasks_client.transport.close()


def _queue(
    client: tasks_v2.CloudTasksClient,
    *,
    worker_url: str = WORKER_URL,
    service_account: str | None = SERVICE_ACCOUNT,
    timeout_s: float = GENEROUS_S,
) -> CloudTasksQueue:
    return CloudTasksQueue(
        "p",
        "l",
        worker_url=worker_url,
        service_account=service_account,
        timeout_s=timeout_s,
        client=client,
    )


TASK = TaskRequest(
    queue="notifications",
    body=b'{"outbox_id":7}\x00\xff\n',  # not valid UTF-8: bytes must arrive untouched
    name="outbox-7",
    headers={"Content-Type": "application/json", "X-Hookyard-Attempt": "1"},
)


# A trailing slash on the configured worker URL must not produce `//tasks/...`.
@pytest.mark.parametrize("worker_url", [WORKER_URL, f"{WORKER_URL}/"])
def test_enqueue_creates_a_named_post_with_an_oidc_token(
    fake: FakeCloudTasks, client: tasks_v2.CloudTasksClient, worker_url: str
) -> None:
    assert _queue(client, worker_url=worker_url).enqueue(TASK) is True

    [request] = fake.requests
    assert request.parent == QUEUE_PATH
    sent = request.task
    assert sent.name == f"{QUEUE_PATH}/tasks/outbox-7"
    http = sent.http_request
    assert http.url == TASK_URL
    assert http.http_method == tasks_v2.HttpMethod.POST
    assert dict(http.headers) == dict(TASK.headers)
    assert http.body == TASK.body
    assert "oidc_token" in http
    assert http.oidc_token.service_account_email == SERVICE_ACCOUNT
    assert http.oidc_token.audience == WORKER_URL  # the one audience the worker accepts
    assert "oauth_token" not in http
    assert "schedule_time" not in sent  # none given: the service runs it at once
    assert "app_engine_http_request" not in sent


def test_no_service_account_sends_no_token(
    fake: FakeCloudTasks, client: tasks_v2.CloudTasksClient
) -> None:
    assert _queue(client, service_account=None).enqueue(TASK) is True

    [request] = fake.requests
    http = request.task.http_request
    assert http.url == TASK_URL
    assert http.body == TASK.body
    assert "oidc_token" not in http
    assert "oauth_token" not in http


@pytest.mark.parametrize(
    "schedule_time",
    [
        datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        # Another offset: the same instant must arrive, whatever the zone it was written in.
        datetime(2030, 1, 2, 5, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_schedule_time_round_trips(
    fake: FakeCloudTasks, client: tasks_v2.CloudTasksClient, schedule_time: datetime
) -> None:
    assert _queue(client).enqueue(replace(TASK, schedule_time=schedule_time)) is True

    [request] = fake.requests
    assert "schedule_time" in request.task
    received = request.task.schedule_time
    assert received == datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert received.microsecond == 678901


def test_already_exists_is_false_not_an_error(
    fake: FakeCloudTasks, client: tasks_v2.CloudTasksClient
) -> None:
    fake.script(Fail(grpc.StatusCode.ALREADY_EXISTS, "Requested entity already exists"))

    assert _queue(client).enqueue(TASK) is False
    assert fake.calls == 1  # not retried
    assert fake.requests[0].task.name == f"{QUEUE_PATH}/tasks/outbox-7"


def test_same_name_twice_is_created_once(
    fake: FakeCloudTasks, client: tasks_v2.CloudTasksClient
) -> None:
    queue = _queue(client)

    assert queue.enqueue(TASK) is True
    assert queue.enqueue(replace(TASK, body=b"again")) is False  # the fake remembers the name

    assert [r.task.name for r in fake.requests] == [f"{QUEUE_PATH}/tasks/outbox-7"] * 2


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,  # the queue does not exist
    ],
)
def test_other_errors_are_a_publish_error_at_once(
    fake: FakeCloudTasks, client: tasks_v2.CloudTasksClient, code: grpc.StatusCode
) -> None:
    fake.script(Fail(code))

    # Waiting for the deadline would time the test out.
    with pytest.raises(PublishError, match="create task on notifications failed") as info:
        _queue(client, timeout_s=UNREACHABLE_S).enqueue(TASK)

    cause = info.value.__cause__
    assert isinstance(cause, gexc.GoogleAPICallError)
    assert cause.grpc_status_code == code
    assert fake.calls == 1  # not retried


def test_server_slower_than_the_timeout_is_a_publish_error(
    fake: FakeCloudTasks, client: tasks_v2.CloudTasksClient
) -> None:
    timeout_s = 1.0
    fake.script(Hold())  # no answer until the fake shuts down

    started = time.monotonic()
    with pytest.raises(PublishError) as info:
        _queue(client, timeout_s=timeout_s).enqueue(TASK)
    elapsed = time.monotonic() - started

    assert isinstance(info.value.__cause__, gexc.DeadlineExceeded)
    assert elapsed >= timeout_s * 0.9  # the deadline runs from before the call is sent
    assert fake.calls == 1


def test_task_without_a_name_sends_no_name(
    fake: FakeCloudTasks, client: tasks_v2.CloudTasksClient
) -> None:
    assert _queue(client).enqueue(replace(TASK, name=None)) is True
    # Unnamed tasks are never de-duplicated: the same body again is a second task.
    assert _queue(client).enqueue(replace(TASK, name=None)) is True

    assert [r.task.name for r in fake.requests] == ["", ""]
    assert [r.parent for r in fake.requests] == [QUEUE_PATH, QUEUE_PATH]
    assert fake.requests[0].task.http_request.url == TASK_URL


def test_no_credentials_is_a_publish_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The client is built on first use and looks up credentials then: without any, that is
    a PublishError like any other failure to enqueue (it escaped once, and a worker that had
    committed answered 503 and never relayed its outbox)."""
    without_google_credentials(monkeypatch, tmp_path / "home")
    queue = CloudTasksQueue(
        "p", "l", worker_url=WORKER_URL, service_account=SERVICE_ACCOUNT, timeout_s=GENEROUS_S
    )

    with pytest.raises(PublishError, match="create task on notifications failed") as info:
        queue.enqueue(TASK)
    assert isinstance(info.value.__cause__, DefaultCredentialsError)
    # Not remembered: the next call tries to build the client again.
    with pytest.raises(PublishError) as again:
        queue.enqueue(TASK)
    assert isinstance(again.value.__cause__, DefaultCredentialsError)


def test_unreachable_service_is_a_publish_error() -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{free_port()}")  # nothing listens there
    client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    try:
        with pytest.raises(PublishError, match="create task on notifications failed") as info:
            _queue(client, timeout_s=GENEROUS_S).enqueue(TASK)
    finally:
        client.transport.close()
    assert isinstance(info.value.__cause__, gexc.ServiceUnavailable)
