"""In-process gRPC fakes for the Google Cloud services Hookyard talks to.

Each fake is a real `grpc.server` bound to 127.0.0.1 on a free port, serving the service's
wire protocol with the client library's own proto-plus message types. The real client
library is pointed at it over an insecure channel, so adapters are tested through the
library's transport, retries and futures, not through mocks.

A fake records every request it received and can be scripted, call by call, to fail with a
gRPC status, to answer late, or to hold its answer until the test releases it. Every
context manager stops its server in `finally`.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import grpc
from google.api import metric_pb2
from google.cloud.monitoring_v3 import types as monitoring_types
from google.cloud.secretmanager_v1 import types as secretmanager_types
from google.cloud.tasks_v2 import types as tasks_types
from google.pubsub_v1 import types as pubsub_types

PUBLISHER_SERVICE = "google.pubsub.v1.Publisher"
SECRET_MANAGER_SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
CLOUD_TASKS_SERVICE = "google.cloud.tasks.v2.CloudTasks"
METRIC_SERVICE = "google.monitoring.v3.MetricService"
MAX_REQUEST_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Fail:
    """Abort the call with this status."""

    code: grpc.StatusCode
    details: str = "scripted failure"


@dataclass(frozen=True)
class Delay:
    """Answer normally, but only after `seconds` (or when the fake shuts down)."""

    seconds: float


@dataclass(frozen=True)
class Hold:
    """Answer normally, but only once the test calls `release()` (or the fake shuts down):
    "the server has not answered yet" stays true however slowly the test runs."""


Action = Fail | Delay | Hold


class _ScriptedFake:
    """What every fake shares: a lock, a per-call script, and a shutdown signal."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: deque[Action] = deque()
        self._closing = threading.Event()
        self._released = threading.Event()
        self.calls = 0
        self.address = ""

    def script(self, *actions: Action) -> None:
        """Queue behaviours for the next calls; once they are used up, calls succeed."""
        with self._lock:
            self._script.extend(actions)

    def clear_script(self) -> None:
        """Forget the behaviours not played yet: from now on, calls succeed."""
        with self._lock:
            self._script.clear()

    def release(self) -> None:
        """Let every call held by `Hold`, now or later, answer."""
        self._released.set()

    def _begin_call(self, context: grpc.ServicerContext) -> None:
        """Count the call and play the next scripted action, if any."""
        with self._lock:
            self.calls += 1
            action = self._script.popleft() if self._script else None
        if isinstance(action, Delay):
            self._closing.wait(action.seconds)
        elif isinstance(action, Hold):
            self._released.wait()
        elif isinstance(action, Fail):
            context.abort(action.code, action.details)

    def _close(self) -> None:
        self._closing.set()
        self._released.set()


@contextmanager
def _serve(
    service: str, handlers: dict[str, grpc.RpcMethodHandler], fake: _ScriptedFake
) -> Iterator[None]:
    # Google's services take requests up to 10 MB (Pub/Sub) and more; gRPC's default is 4 MB.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_receive_message_length", MAX_REQUEST_BYTES)],
    )
    try:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        port = server.add_insecure_port("127.0.0.1:0")
        if port == 0:
            raise RuntimeError(f"could not bind a port for the {service} fake")
        fake.address = f"127.0.0.1:{port}"
        server.start()
        yield
    finally:
        fake._close()  # wake any handler still sleeping in a Delay
        server.stop(grace=None).wait(60)


class FakePublisher(_ScriptedFake):
    """`google.pubsub.v1.Publisher/Publish`, assigning ids `msg-1`, `msg-2`, ... ."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[pubsub_types.PublishRequest] = []
        self._next_id = 0
        self._answered = threading.Condition(self._lock)

    def published(self) -> list[pubsub_types.PubsubMessage]:
        """Every message of every request that was answered with ids, in arrival order."""
        with self._lock:
            return [m for r in self.requests for m in r.messages]

    def wait_published(self, count: int, timeout_s: float) -> list[pubsub_types.PubsubMessage]:
        """Wait until `count` messages have been answered; what was answered by then."""
        with self._answered:
            self._answered.wait_for(
                lambda: sum(len(r.messages) for r in self.requests) >= count, timeout_s
            )
        return self.published()

    def _publish(
        self, request: pubsub_types.PublishRequest, context: grpc.ServicerContext
    ) -> pubsub_types.PublishResponse:
        self._begin_call(context)
        with self._answered:
            self.requests.append(request)
            ids = []
            for _ in request.messages:
                self._next_id += 1
                ids.append(f"msg-{self._next_id}")
            self._answered.notify_all()
        return pubsub_types.PublishResponse(message_ids=ids)


@contextmanager
def fake_publisher() -> Iterator[FakePublisher]:
    fake = FakePublisher()
    handlers = {
        "Publish": grpc.unary_unary_rpc_method_handler(
            fake._publish,
            request_deserializer=pubsub_types.PublishRequest.deserialize,
            response_serializer=pubsub_types.PublishResponse.serialize,
        )
    }
    with _serve(PUBLISHER_SERVICE, handlers, fake):
        yield fake


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), bit by bit: slow, obvious, and independent of the adapter's own."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


class FakeSecretManager(_ScriptedFake):
    """`AccessSecretVersion` over secrets stored by full version name.

    `put` stores a payload under `projects/<p>/secrets/<s>/versions/latest` with a correct
    CRC32C unless told otherwise; unknown names answer NOT_FOUND, as the real service does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.requested: list[str] = []
        self._payloads: dict[str, secretmanager_types.SecretPayload] = {}

    def put(
        self,
        project: str,
        secret: str,
        data: bytes,
        *,
        checksum: int | None = None,
        with_checksum: bool = True,
    ) -> None:
        payload = secretmanager_types.SecretPayload(data=data)
        if with_checksum:
            payload.data_crc32c = crc32c(data) if checksum is None else checksum
        with self._lock:
            self._payloads[f"projects/{project}/secrets/{secret}/versions/latest"] = payload

    def _access(
        self, request: secretmanager_types.AccessSecretVersionRequest, context: grpc.ServicerContext
    ) -> secretmanager_types.AccessSecretVersionResponse:
        with self._lock:
            self.requested.append(request.name)
        self._begin_call(context)
        with self._lock:
            payload = self._payloads.get(request.name)
        if payload is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Secret [{request.name}] not found.")
        return secretmanager_types.AccessSecretVersionResponse(name=request.name, payload=payload)


@contextmanager
def fake_secret_manager() -> Iterator[FakeSecretManager]:
    fake = FakeSecretManager()
    handlers = {
        "AccessSecretVersion": grpc.unary_unary_rpc_method_handler(
            fake._access,
            request_deserializer=secretmanager_types.AccessSecretVersionRequest.deserialize,
            response_serializer=secretmanager_types.AccessSecretVersionResponse.serialize,
        )
    }
    with _serve(SECRET_MANAGER_SERVICE, handlers, fake):
        yield fake


class FakeCloudTasks(_ScriptedFake):
    """`google.cloud.tasks.v2.CloudTasks/CreateTask`, remembering the names it created.

    Every request is recorded on arrival, before any scripted behaviour plays. A name that
    was created before answers ALREADY_EXISTS, as the real service does; a task without a
    name is given one, `.../tasks/auto-1`, `auto-2`, ... .
    """

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tasks_types.CreateTaskRequest] = []
        self._names: set[str] = set()
        self._next_id = 0

    def _create(
        self, request: tasks_types.CreateTaskRequest, context: grpc.ServicerContext
    ) -> tasks_types.Task:
        with self._lock:
            self.requests.append(request)
        self._begin_call(context)
        task = tasks_types.Task(request.task)
        with self._lock:
            if not task.name:
                self._next_id += 1
                task.name = f"{request.parent}/tasks/auto-{self._next_id}"
            duplicate = task.name in self._names
            self._names.add(task.name)
        if duplicate:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"Task {task.name} already exists.")
        return task


@contextmanager
def fake_cloud_tasks() -> Iterator[FakeCloudTasks]:
    fake = FakeCloudTasks()
    handlers = {
        "CreateTask": grpc.unary_unary_rpc_method_handler(
            fake._create,
            request_deserializer=tasks_types.CreateTaskRequest.deserialize,
            response_serializer=tasks_types.Task.serialize,
        )
    }
    with _serve(CLOUD_TASKS_SERVICE, handlers, fake):
        yield fake


class FakeMetricService(_ScriptedFake):
    """`google.monitoring.v3.MetricService/ListTimeSeries`, answering with the series a test
    added for the metric type its filter names (`metric.type = "..."`), in one page.

    It does not evaluate the rest of the filter, nor align: tests read what was asked from
    `requests` (recorded on arrival) and choose what comes back.
    """

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[monitoring_types.ListTimeSeriesRequest] = []
        self._series: dict[str, list[monitoring_types.TimeSeries]] = {}

    def add_gauge(
        self,
        metric_type: str,
        resource_type: str,
        labels: dict[str, str],
        points: list[tuple[datetime, int]],
    ) -> None:
        """One INT64 gauge series; `points` as (end time, value), in any order."""
        series = monitoring_types.TimeSeries(
            metric={"type": metric_type},
            resource={"type": resource_type, "labels": labels},
            metric_kind=metric_pb2.MetricDescriptor.GAUGE,
            value_type=metric_pb2.MetricDescriptor.INT64,
            points=[
                {"interval": {"end_time": end}, "value": {"int64_value": value}}
                for end, value in points
            ],
        )
        with self._lock:
            self._series.setdefault(metric_type, []).append(series)

    def _list(
        self, request: monitoring_types.ListTimeSeriesRequest, context: grpc.ServicerContext
    ) -> monitoring_types.ListTimeSeriesResponse:
        with self._lock:
            self.requests.append(request)
        self._begin_call(context)
        named = re.search(r'metric\.type\s*=\s*"([^"]+)"', request.filter)
        if named is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the filter names no metric type")
        with self._lock:
            series = list(self._series.get(named[1], []))
        return monitoring_types.ListTimeSeriesResponse(time_series=series)


@contextmanager
def fake_metric_service() -> Iterator[FakeMetricService]:
    fake = FakeMetricService()
    handlers = {
        "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
            fake._list,
            request_deserializer=monitoring_types.ListTimeSeriesRequest.deserialize,
            response_serializer=monitoring_types.ListTimeSeriesResponse.serialize,
        )
    }
    with _serve(METRIC_SERVICE, handlers, fake):
        yield fake
