"""Google Cloud Tasks: named HTTP tasks to the worker, with an OIDC token it can verify.

The token's audience is the worker's base URL, not the task's URL: one audience for every
surface, which is what the worker's verifier expects."""

from __future__ import annotations

from typing import Any

from common.errors import PublishError
from common.lazy import Lazy
from common.messaging.tasks import TaskRequest


def _tasks_client() -> Any:
    from google.cloud import tasks_v2

    return tasks_v2.CloudTasksClient()


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
    ) -> None:
        self._project = project
        self._location = location
        self._worker_url = worker_url.rstrip("/")
        self._service_account = service_account
        self._timeout = timeout_s
        self._client: Lazy[Any] = Lazy(_tasks_client, client)

    def _get_client(self) -> Any:
        return self._client.get()

    def enqueue(self, task: TaskRequest) -> bool:
        from google.api_core import exceptions as gexc
        from google.cloud import tasks_v2

        client = self._get_client()
        parent = client.queue_path(self._project, self._location, task.queue)
        url = f"{self._worker_url}/tasks/{task.queue}"
        http_request: dict[str, Any] = {
            "http_method": tasks_v2.HttpMethod.POST,
            "url": url,
            "headers": dict(task.headers),
            "body": task.body,
        }
        if self._service_account:
            http_request["oidc_token"] = {
                "service_account_email": self._service_account,
                "audience": self._worker_url,
            }
        body: dict[str, Any] = {"http_request": http_request}
        if task.name:
            body["name"] = client.task_path(self._project, self._location, task.queue, task.name)
        if task.schedule_time is not None:
            if task.schedule_time.utcoffset() is None:
                raise PublishError("schedule_time must carry a time zone")
            body["schedule_time"] = task.schedule_time  # proto-plus converts datetimes
        try:
            client.create_task(parent=parent, task=body, timeout=self._timeout)
        except gexc.AlreadyExists:
            return False
        except gexc.GoogleAPICallError as exc:
            raise PublishError(f"create task on {task.queue} failed: {exc.code}") from exc
        return True
