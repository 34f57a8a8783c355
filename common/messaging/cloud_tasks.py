"""Google Cloud Tasks: named HTTP tasks to the worker, with an OIDC token it can verify.

The token's audience is the worker's base URL, not the task's URL: one audience for every
surface, which is what the worker's verifier expects. Every failure to enqueue (building the
client, credentials, transport, deadline, any error status) is a `PublishError`, which callers
turn into a 503 or leave to a sweeper; ALREADY_EXISTS is "already enqueued".

With an `endpoint` (the local stack's URL), the same client speaks Cloud Tasks' REST API
to it with anonymous credentials, as to any Google API emulator."""

from __future__ import annotations

from typing import Any

from common.errors import PublishError
from common.lazy import Lazy
from common.messaging.tasks import TaskRequest


def _tasks_client(endpoint: str | None = None) -> Any:
    from google.cloud import tasks_v2

    if endpoint is None:
        return tasks_v2.CloudTasksClient()
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    return tasks_v2.CloudTasksClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint=endpoint),
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )


def _already_exists(exc: Exception) -> bool:
    """gRPC raises `AlreadyExists`; REST raises the HTTP status's class, `Conflict`, for
    every 409 (ABORTED too), so the status in Google's error body tells them apart."""
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.AlreadyExists):
        return True
    if not isinstance(exc, gexc.Conflict) or exc.response is None:
        return False
    try:
        status = exc.response.json()["error"]["status"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return bool(status == "ALREADY_EXISTS")


class CloudTasksQueue:
    def __init__(
        self,
        project: str,
        location: str,
        *,
        worker_url: str,
        service_account: str | None,
        timeout_s: float,
        client: Any = None,
        endpoint: str | None = None,
        audience: str | None = None,
    ) -> None:
        """`audience` defaults to `worker_url`; the local stack names its own address, the
        audience of every token it mints, while tasks go straight to the worker process."""
        self._project = project
        self._location = location
        self._worker_url = worker_url.rstrip("/")
        self._audience = (audience or worker_url).rstrip("/")
        self._service_account = service_account
        self._timeout = timeout_s
        self._client: Lazy[Any] = Lazy(lambda: _tasks_client(endpoint), client)

    def _get_client(self) -> Any:
        return self._client.get()

    def enqueue(self, task: TaskRequest) -> bool:
        if task.schedule_time is not None and task.schedule_time.utcoffset() is None:
            raise PublishError("schedule_time must carry a time zone")
        from google.api_core import exceptions as gexc

        try:
            client = self._get_client()  # building it looks up credentials
            client.create_task(
                parent=client.queue_path(self._project, self._location, task.queue),
                task=self._task(client, task),
                timeout=self._timeout,
            )
        except Exception as exc:  # API errors, credentials, transport, deadline
            if _already_exists(exc):
                return False
            reason = exc.code if isinstance(exc, gexc.GoogleAPICallError) else type(exc).__name__
            raise PublishError(f"create task on {task.queue} failed: {reason}") from exc
        return True

    def _task(self, client: Any, task: TaskRequest) -> dict[str, Any]:
        from google.cloud import tasks_v2

        http_request: dict[str, Any] = {
            "http_method": tasks_v2.HttpMethod.POST,
            "url": f"{self._worker_url}/tasks/{task.queue}",
            "headers": dict(task.headers),
            "body": task.body,
        }
        if self._service_account:
            http_request["oidc_token"] = {
                "service_account_email": self._service_account,
                "audience": self._audience,
            }
        body: dict[str, Any] = {"http_request": http_request}
        if task.name:
            body["name"] = client.task_path(self._project, self._location, task.queue, task.name)
        if task.schedule_time is not None:
            body["schedule_time"] = task.schedule_time  # proto-plus converts datetimes
        return body
