"""`/admin/stats` in GCP: backlog figures read from Cloud Monitoring by the real
`MetricServiceClient`, against a gRPC fake of `google.monitoring.v3.MetricService`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from google.auth.exceptions import DefaultCredentialsError
from google.cloud.monitoring_v3 import Aggregation, ListTimeSeriesRequest, MetricServiceClient
from google.cloud.monitoring_v3.services.metric_service.transports import (
    MetricServiceGrpcTransport,
)
from sqlalchemy.engine import Engine

from common.monitoring_stats import (
    OLDEST_UNACKED,
    QUEUE_DEPTH,
    UNDELIVERED,
    MonitoringBacklog,
    monitoring_backlog,
)
from common.secrets import EnvSecretStore
from common.topology import get_topology
from functions.admin import Admin
from functions.operations import Operations
from tests.support.grpc_fakes import Delay, Fail, FakeMetricService, fake_metric_service
from tests.support.stack import ADMIN_TOKEN
from tests.support.wsgi import serving, target_app

PROJECT = "proj-1"
REGION = "europe-west1"
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
GENEROUS_S = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def monitoring() -> Iterator[FakeMetricService]:
    with fake_metric_service() as fake:
        yield fake


@pytest.fixture
def clients(monitoring: FakeMetricService) -> Iterator[list[MetricServiceClient]]:
    made: list[MetricServiceClient] = []
    yield made
    for client in made:
        client.transport.close()


def provider(
    monitoring: FakeMetricService,
    clients: list[MetricServiceClient],
    *,
    clock: Clock | None = None,
    deadline_s: float = GENEROUS_S,
) -> MonitoringBacklog:
    def client() -> MetricServiceClient:
        channel = grpc.insecure_channel(monitoring.address)
        made = MetricServiceClient(transport=MetricServiceGrpcTransport(channel=channel))
        clients.append(made)
        return made

    return MonitoringBacklog(
        PROJECT, REGION, ["ledger", "event-log"], ["notifications"],
        client_factory=client, deadline_s=deadline_s, clock=clock or Clock(),
        now=NOW.timestamp,
    )  # fmt: skip


def subscription(name: str) -> dict[str, str]:
    return {"project_id": PROJECT, "subscription_id": name}


def test_latest_points_land_per_subscription_and_queue(
    monitoring: FakeMetricService, clients: list[MetricServiceClient]
) -> None:
    older, newer = NOW - timedelta(minutes=4), NOW - timedelta(minutes=3)
    # Points out of order: the newest one counts, not the first.
    monitoring.add_gauge(UNDELIVERED, "pubsub_subscription", subscription("ledger"),
                         [(newer, 7), (older, 99)])  # fmt: skip
    monitoring.add_gauge(UNDELIVERED, "pubsub_subscription", subscription("event-log"),
                         [(newer, 0)])  # fmt: skip
    monitoring.add_gauge(OLDEST_UNACKED, "pubsub_subscription", subscription("ledger"),
                         [(newer, 42)])  # fmt: skip
    # A queue's depth can come as one series per target type: they add up.
    queue = {"project_id": PROJECT, "queue_id": "notifications", "location": REGION}
    monitoring.add_gauge(QUEUE_DEPTH, "cloud_tasks_queue", {**queue, "target_type": "http"},
                         [(newer, 3)])  # fmt: skip
    monitoring.add_gauge(QUEUE_DEPTH, "cloud_tasks_queue", {**queue, "target_type": "app"},
                         [(newer, 2)])  # fmt: skip

    figures = provider(monitoring, clients)()

    assert figures["subscriptions"]["ledger"] == {
        "backlog": 7, "in_flight": None, "oldest_unacked_age_s": 42.0,
        "as_of": newer.isoformat(),
    }  # fmt: skip
    # Zero undelivered is a zero Monitoring reported; the missing age is said to be missing.
    event_log = figures["subscriptions"]["event-log"]
    assert event_log["backlog"] == 0
    assert event_log["oldest_unacked_age_s"] is None
    assert "no point in Cloud Monitoring" in event_log["unavailable"]
    assert figures["queues"]["notifications"] == {
        "backlog": 5, "in_flight": None, "oldest_unacked_age_s": None,
        "as_of": newer.isoformat(),
    }  # fmt: skip


def test_one_request_per_metric_filtered_to_the_topology_over_a_short_aligned_interval(
    monitoring: FakeMetricService, clients: list[MetricServiceClient]
) -> None:
    provider(monitoring, clients)()

    by_type = {r.filter.split('"')[1]: r for r in monitoring.requests}
    assert list(by_type) == [UNDELIVERED, OLDEST_UNACKED, QUEUE_DEPTH]
    for request in monitoring.requests:
        assert request.name == f"projects/{PROJECT}"
        assert request.interval.end_time == NOW
        assert request.interval.start_time == NOW - timedelta(minutes=10)
        assert request.aggregation.alignment_period == timedelta(seconds=60)
        assert request.aggregation.per_series_aligner == Aggregation.Aligner.ALIGN_MAX
        assert request.view == ListTimeSeriesRequest.TimeSeriesView.FULL
        assert f'resource.labels.project_id = "{PROJECT}"' in request.filter
    assert by_type[UNDELIVERED].filter == (
        f'metric.type = "{UNDELIVERED}" AND resource.type = "pubsub_subscription"'
        f' AND resource.labels.project_id = "{PROJECT}"'
        ' AND resource.labels.subscription_id = one_of("event-log", "ledger")'
    )
    assert by_type[QUEUE_DEPTH].filter == (
        f'metric.type = "{QUEUE_DEPTH}" AND resource.type = "cloud_tasks_queue"'
        f' AND resource.labels.project_id = "{PROJECT}"'
        ' AND resource.labels.queue_id = one_of("notifications")'
        f' AND resource.labels.location = "{REGION}"'
    )


def test_permission_denied_is_unavailable_with_the_reason(
    monitoring: FakeMetricService, clients: list[MetricServiceClient]
) -> None:
    monitoring.add_gauge(UNDELIVERED, "pubsub_subscription", subscription("ledger"), [(NOW, 1)])
    denied = Fail(grpc.StatusCode.PERMISSION_DENIED, "Permission monitoring.timeSeries.list")
    monitoring.script(denied, denied, denied)

    figures = provider(monitoring, clients)()

    for entry in [*figures["subscriptions"].values(), *figures["queues"].values()]:
        assert entry["backlog"] is None
        assert entry["oldest_unacked_age_s"] is None
        assert "permission denied" in entry["unavailable"]
    assert set(figures["subscriptions"]) == {"ledger", "event-log"}
    assert set(figures["queues"]) == {"notifications"}


def test_a_server_that_does_not_answer_is_unavailable_after_the_deadline(
    monitoring: FakeMetricService, clients: list[MetricServiceClient]
) -> None:
    monitoring.add_gauge(UNDELIVERED, "pubsub_subscription", subscription("ledger"), [(NOW, 1)])
    # Held far past the deadline; the fake lets go when it shuts down.
    monitoring.script(Delay(10 * GENEROUS_S), Delay(10 * GENEROUS_S), Delay(10 * GENEROUS_S))

    figures = provider(monitoring, clients, deadline_s=1)()

    ledger = figures["subscriptions"]["ledger"]
    assert ledger["backlog"] is None
    assert ledger["unavailable"] == "Cloud Monitoring did not answer within 1 s"
    assert figures["queues"]["notifications"]["backlog"] is None


def test_no_credentials_is_unavailable_and_tried_again_after_the_cache() -> None:
    attempts: list[int] = []

    def no_credentials() -> MetricServiceClient:
        attempts.append(1)
        raise DefaultCredentialsError("Your default credentials were not found.")

    clock = Clock()
    backlog = MonitoringBacklog(
        PROJECT, REGION, ["ledger"], [], client_factory=no_credentials, clock=clock
    )
    figures = backlog()
    assert figures["subscriptions"]["ledger"]["backlog"] is None
    assert "no valid Google credentials" in figures["subscriptions"]["ledger"]["unavailable"]
    assert figures["queues"] == {}

    backlog()
    assert len(attempts) == 2  # one per metric read, not one per request
    clock.now += 31
    backlog()
    assert len(attempts) == 4


def test_figures_are_cached_for_thirty_seconds(
    monitoring: FakeMetricService, clients: list[MetricServiceClient]
) -> None:
    clock = Clock()
    backlog = provider(monitoring, clients, clock=clock)
    backlog()
    assert monitoring.calls == 3
    clock.now += 29
    backlog()
    assert monitoring.calls == 3
    clock.now += 2
    backlog()
    assert monitoring.calls == 6


def test_admin_stats_answers_200_with_unavailable_figures(
    monitoring: FakeMetricService,
    clients: list[MetricServiceClient],
    engine: Engine,
) -> None:
    denied = Fail(grpc.StatusCode.PERMISSION_DENIED)
    monitoring.script(denied, denied, denied)
    operations = Operations(lambda: engine, None, provider(monitoring, clients))
    admin = Admin(lambda: engine, EnvSecretStore(), PROJECT, operations)
    with serving(target_app("admin", admin.handle)) as url:
        response = httpx.get(
            f"{url}/admin/stats",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=GENEROUS_S,
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["subscriptions"]["ledger"]["backlog"] is None
    assert "permission denied" in body["subscriptions"]["ledger"]["unavailable"]
    assert "permission denied" in body["queues"]["notifications"]["unavailable"]


def test_the_deployed_provider_covers_every_subscription_and_queue() -> None:
    topology = get_topology()
    backlog = monitoring_backlog(PROJECT, REGION, topology)
    assert backlog._subscriptions == sorted(s.name for s in topology.subscriptions)
    assert backlog._queues == sorted(q.name for q in topology.queues)


def test_the_gcp_admin_target_reads_monitoring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, the deployed admin had no stats provider in GCP: every backlog came back empty."""
    from common.config import Settings
    from composition.adapters import from_settings

    monkeypatch.setenv("HOOKYARD_ENV", "gcp")
    monkeypatch.setenv("HOOKYARD_SECRETS", "env")
    monkeypatch.setenv("HOOKYARD_GCP_PROJECT", PROJECT)
    backlog = from_settings(Settings()).backlog
    assert isinstance(backlog, MonitoringBacklog)
    assert backlog._project == PROJECT
