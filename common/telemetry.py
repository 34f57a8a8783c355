"""Sets up OpenTelemetry's SDK for this process from settings, or leaves it out entirely.

`HOOKYARD_METRICS_EXPORTER` picks a Prometheus page (each process renders its own
registry; the local stack's front door serves them all at `/metrics`) or Cloud Monitoring;
`HOOKYARD_TRACES_EXPORTER` picks stdout or Cloud Trace. Each exporter is imported only when
chosen, and with neither the SDK is never imported: the instruments and spans stay no-ops.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Request, Response

from common import metrics, spans
from common.config import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import CollectorRegistry

METER_NAME = "hookyard"
METRICS_PATH = "/metrics"
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Telemetry:
    meter_provider: MeterProvider | None = None
    tracer_provider: TracerProvider | None = None
    registry: CollectorRegistry | None = None

    def prometheus_text(self) -> bytes | None:
        """This process's metrics in Prometheus' text format; None if not exported so."""
        if self.registry is None:
            return None
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def shutdown(self) -> None:
        for provider in (self.meter_provider, self.tracer_provider):
            if provider is not None:
                with contextlib.suppress(Exception):
                    provider.shutdown()


_active: Telemetry | None = None


def active() -> Telemetry | None:
    return _active


def prometheus_response(page: bytes) -> Response:
    from common.http import secure

    response = Response(page)
    response.headers["Content-Type"] = PROMETHEUS_CONTENT_TYPE
    return secure(response)


def own_metrics(request: Request) -> Response | None:
    """A target's own `GET /metrics` when it exports to Prometheus (the local stack's front
    door merges them); None for every other request, and for every request otherwise."""
    if request.path != METRICS_PATH or request.method not in {"GET", "HEAD"}:
        return None
    page = _active.prometheus_text() if _active is not None else None
    return prometheus_response(page) if page is not None else None


def configure_telemetry(settings: Settings, service: str) -> Telemetry:
    """Replaces this process's telemetry (a test's second stack starts from zero)."""
    global _active
    shutdown_telemetry()
    telemetry = Telemetry()
    exporter = settings.metrics_exporter_name
    if exporter != "none" or settings.traces_exporter != "none":
        from opentelemetry.sdk.resources import Resource

        resource = Resource.create({"service.name": f"hookyard-{service}"})
        if exporter != "none":
            _metrics(telemetry, settings, resource)
        if settings.traces_exporter != "none":
            _traces(telemetry, settings, resource)
    metrics.install(
        telemetry.meter_provider.get_meter(METER_NAME) if telemetry.meter_provider else None
    )
    spans.install(
        telemetry.tracer_provider.get_tracer(METER_NAME) if telemetry.tracer_provider else None
    )
    _active = telemetry
    return telemetry


def shutdown_telemetry() -> None:
    global _active
    if _active is not None:
        _active.shutdown()
        _active = None
    metrics.install(None)
    spans.install(None)


def _metrics(telemetry: Telemetry, settings: Settings, resource: Any) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader

    reader: MetricReader
    if settings.metrics_exporter_name == "prometheus":
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry

        # A registry of our own: no process or GC collectors, and a second stack in one
        # process (tests) never registers twice.
        telemetry.registry = CollectorRegistry(auto_describe=False)
        reader = PrometheusMetricReader(
            disable_target_info=True, scope_info_enabled=False, registry=telemetry.registry
        )
    else:
        from opentelemetry.exporter.cloud_monitoring import CloudMonitoringMetricsExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        # Several Cloud Run instances write the same series: each its own, or Monitoring
        # refuses points written more often than once per sampling period.
        exporter = CloudMonitoringMetricsExporter(
            project_id=settings.gcp_project, add_unique_identifier=True
        )
        reader = PeriodicExportingMetricReader(
            exporter,
            export_interval_millis=settings.metrics_export_interval_s * 1000,
        )
    telemetry.meter_provider = MeterProvider(
        metric_readers=[reader], resource=resource, shutdown_on_exit=False
    )


def _traces(telemetry: Telemetry, settings: Settings, resource: Any) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    exporter: SpanExporter
    if settings.traces_exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.cloud_trace import CloudTraceSpanExporter

        exporter = CloudTraceSpanExporter(project_id=settings.gcp_project)  # type: ignore[no-untyped-call]
    # Decided by trace id, so every service keeps or drops the same traces; a sender's
    # unsampled traceparent does not switch our tracing off.
    ratio = TraceIdRatioBased(settings.traces_sample_ratio)
    provider = TracerProvider(
        resource=resource,
        sampler=ParentBased(ratio, remote_parent_not_sampled=ratio),
        shutdown_on_exit=False,
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    telemetry.tracer_provider = provider
