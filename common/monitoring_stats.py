"""Backlog figures from Cloud Monitoring, in the shape `/admin/stats` reports locally.

In GCP no database knows the backlog: Pub/Sub and Cloud Tasks publish it as metrics. Each
metric is one ListTimeSeries call (the API takes one metric type per call) over the last
few minutes, aligned to a minute, of which the newest point counts. Monitoring shows a
sample up to four minutes after it was taken, so every figure carries its `as_of`.

What cannot be read is said so, per subscription and queue: its figures are null and
`unavailable` gives the reason. A null with a reason is never mistaken for an empty backlog;
a zero is a zero Monitoring reported. `in_flight` is not a Monitoring metric: always null.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from common.logging import get_logger
from common.topology import Topology

if TYPE_CHECKING:
    from google.cloud.monitoring_v3 import MetricServiceClient, TimeSeries

log = get_logger(__name__)

UNDELIVERED = "pubsub.googleapis.com/subscription/num_undelivered_messages"
OLDEST_UNACKED = "pubsub.googleapis.com/subscription/oldest_unacked_message_age"
QUEUE_DEPTH = "cloudtasks.googleapis.com/queue/depth"
# Pub/Sub samples every 60 s and a sample shows up to 240 s later: ten minutes always
# holds the latest one without reading a long history.
LOOKBACK_S = 600
ALIGNMENT_S = 60
CACHE_TTL_S = 30.0
DEADLINE_S = 5.0

ClientFactory = Callable[[], "MetricServiceClient"]


@dataclass(frozen=True, slots=True)
class _Metric:
    type: str
    resource_type: str
    id_label: str


_UNDELIVERED = _Metric(UNDELIVERED, "pubsub_subscription", "subscription_id")
_OLDEST = _Metric(OLDEST_UNACKED, "pubsub_subscription", "subscription_id")
_DEPTH = _Metric(QUEUE_DEPTH, "cloud_tasks_queue", "queue_id")


@dataclass(frozen=True, slots=True)
class _Point:
    value: float
    end: datetime


Latest = dict[str, _Point]
"""Resource id -> its newest point."""


class MonitoringBacklog:
    """A `StatsProvider`: called per `/admin/stats`, it reads Monitoring at most once per
    `ttl_s` (concurrent callers wait for the one read), whatever that read found."""

    def __init__(
        self,
        project: str,
        location: str,
        subscriptions: Collection[str],
        queues: Collection[str],
        *,
        client_factory: ClientFactory | None = None,
        ttl_s: float = CACHE_TTL_S,
        deadline_s: float = DEADLINE_S,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._project = project
        self._location = location
        self._subscriptions = sorted(subscriptions)
        self._queues = sorted(queues)
        self._client_factory = client_factory or _default_client
        self._client: MetricServiceClient | None = None
        self._ttl_s = ttl_s
        self._deadline_s = deadline_s
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        self._cached: dict[str, Any] | None = None
        self._cached_at = 0.0

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            if self._cached is not None and self._clock() - self._cached_at < self._ttl_s:
                return self._cached
            self._cached = self._read()
            self._cached_at = self._clock()
            return self._cached

    def _read(self) -> dict[str, Any]:
        deadline = self._clock() + self._deadline_s
        undelivered = self._latest(_UNDELIVERED, self._subscriptions, deadline)
        oldest = self._latest(_OLDEST, self._subscriptions, deadline)
        depth = self._latest(_DEPTH, self._queues, deadline)
        return {
            "subscriptions": {
                name: _figures(name, undelivered, oldest) for name in self._subscriptions
            },
            "queues": {name: _figures(name, depth, None) for name in self._queues},
        }

    def _latest(self, metric: _Metric, ids: list[str], deadline: float) -> Latest | str:
        """The newest point per id, or why there are none."""
        if not ids:
            return {}
        remaining = deadline - self._clock()
        if remaining <= 0:
            return self._deadline_reason()
        try:
            if self._client is None:
                self._client = self._client_factory()
            series = self._client.list_time_series(
                request=self._request(metric, ids), retry=None, timeout=remaining
            )
            return _newest(metric, series)
        except Exception as exc:
            reason = _reason(exc, self._deadline_s)
            log.warning(
                "cloud monitoring unavailable",
                metric=metric.type,
                error_class=type(exc).__name__,
                reason=reason,
            )
            return reason

    def _request(self, metric: _Metric, ids: list[str]) -> dict[str, Any]:
        end = self._now()
        selected = ", ".join(json.dumps(i) for i in ids)
        filter_ = (
            f'metric.type = "{metric.type}" AND resource.type = "{metric.resource_type}"'
            f" AND resource.labels.project_id = {json.dumps(self._project)}"
            f" AND resource.labels.{metric.id_label} = one_of({selected})"
        )
        if metric is _DEPTH:
            filter_ += f" AND resource.labels.location = {json.dumps(self._location)}"
        return {
            "name": f"projects/{self._project}",
            "filter": filter_,
            "interval": {
                "start_time": {"seconds": int(end) - LOOKBACK_S},
                "end_time": {"seconds": int(end)},
            },
            "aggregation": {
                "alignment_period": {"seconds": ALIGNMENT_S},
                "per_series_aligner": "ALIGN_MAX",
            },
            "view": "FULL",
        }

    def _deadline_reason(self) -> str:
        return f"Cloud Monitoring did not answer within {self._deadline_s:g} s"


def _newest(metric: _Metric, series: Any) -> Latest:
    """Several series for one id (a queue's target types) add up; ages keep the largest."""
    latest: Latest = {}
    per_id: dict[str, list[_Point]] = {}
    for one in series:
        resource_id = one.resource.labels.get(metric.id_label)
        point = _newest_point(one)
        if resource_id and point is not None:
            per_id.setdefault(resource_id, []).append(point)
    for resource_id, points in per_id.items():
        end = max(p.end for p in points)
        values = [p.value for p in points]
        value = max(values) if metric is _OLDEST else sum(values)
        latest[resource_id] = _Point(value, end)
    return latest


def _newest_point(series: TimeSeries) -> _Point | None:
    newest = max(series.points, key=lambda p: p.interval.end_time, default=None)
    if newest is None:
        return None
    typed = type(newest.value).pb(newest.value)
    kind = typed.WhichOneof("value")
    if kind not in {"int64_value", "double_value"}:
        return None
    end = newest.interval.end_time
    return _Point(float(getattr(typed, kind)), end.astimezone(UTC))


def _figures(name: str, count: Latest | str, age: Latest | str | None) -> dict[str, Any]:
    reasons: list[str] = []
    backlog = _value(name, count, reasons)
    oldest = _value(name, age, reasons) if age is not None else None
    as_of = [p.end for p in (_at(name, count), _at(name, age)) if p is not None]
    figures: dict[str, Any] = {
        "backlog": None if backlog is None else int(backlog),
        "in_flight": None,
        "oldest_unacked_age_s": oldest,
        "as_of": min(as_of).isoformat() if as_of else None,
    }
    if reasons:
        figures["unavailable"] = "; ".join(dict.fromkeys(reasons))
    return figures


def _value(name: str, read: Latest | str | None, reasons: list[str]) -> float | None:
    if isinstance(read, str):
        reasons.append(read)
        return None
    point = read.get(name) if read is not None else None
    if point is None:
        reasons.append(f"no point in Cloud Monitoring for the last {LOOKBACK_S // 60} minutes")
        return None
    return point.value


def _at(name: str, read: Latest | str | None) -> _Point | None:
    return read.get(name) if isinstance(read, dict) else None


def _reason(exc: Exception, deadline_s: float) -> str:
    """A sentence for the operator; Google's message is logged by class only."""
    from google.api_core import exceptions as api
    from google.auth.exceptions import GoogleAuthError

    if isinstance(exc, api.PermissionDenied):
        return "Cloud Monitoring refused: permission denied (needs roles/monitoring.viewer)"
    if isinstance(exc, api.Unauthenticated | GoogleAuthError):
        return "Cloud Monitoring could not be read: no valid Google credentials"
    if isinstance(exc, api.DeadlineExceeded):
        return f"Cloud Monitoring did not answer within {deadline_s:g} s"
    if isinstance(exc, api.GoogleAPICallError):
        code = getattr(exc.grpc_status_code, "name", None) or str(exc.code)
        return f"Cloud Monitoring answered {code}"
    return f"Cloud Monitoring could not be read ({type(exc).__name__})"


def _default_client() -> MetricServiceClient:
    from google.cloud.monitoring_v3 import MetricServiceClient

    return MetricServiceClient()


def monitoring_backlog(project: str, location: str, topology: Topology) -> MonitoringBacklog:
    """The provider for a deployment's topology: its subscriptions and queues."""
    return MonitoringBacklog(
        project,
        location,
        [s.name for s in topology.subscriptions],
        [q.name for q in topology.queues],
    )
