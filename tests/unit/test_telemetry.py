"""Telemetry set up from settings: what each choice installs, and a fresh start each time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from common import metrics, spans
from common.config import Settings
from common.telemetry import configure_telemetry, shutdown_telemetry
from common.tracing import TraceContext


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    shutdown_telemetry()


def _received(page: bytes | None) -> dict[str, float]:
    assert page is not None
    return {
        sample.labels["source"]: sample.value
        for family in text_string_to_metric_families(page.decode())
        for sample in family.samples
        if sample.name == "hookyard_webhooks_received_total"
    }


def test_nothing_configured_installs_nothing() -> None:
    telemetry = configure_telemetry(
        Settings(metrics_exporter="none", traces_exporter="none"), "webhook"
    )
    assert telemetry.prometheus_text() is None
    assert not spans.enabled()
    metrics.webhook_received("stripe")  # a no-op, not an error


def test_gcp_defaults_to_no_metrics_and_local_to_prometheus() -> None:
    assert Settings(env="gcp").metrics_exporter_name == "none"
    assert Settings().metrics_exporter_name == "prometheus"
    assert Settings(env="gcp", metrics_exporter="cloud-monitoring").metrics_exporter_name == (
        "cloud-monitoring"
    )


def test_each_configuration_starts_its_counters_from_zero() -> None:
    first = configure_telemetry(Settings(), "local")
    metrics.webhook_received("stripe")
    metrics.webhook_received("stripe")
    assert _received(first.prometheus_text()) == {"stripe": 2.0}
    second = configure_telemetry(Settings(), "local")
    metrics.webhook_received("github")
    assert _received(second.prometheus_text()) == {"github": 1.0}


def test_a_configured_tracer_continues_the_trace_it_is_given() -> None:
    configure_telemetry(Settings(metrics_exporter="none", traces_exporter="console"), "worker")
    parent = TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", False)
    with spans.span("push ledger", parent, "consumer") as context:
        assert context is not None
        assert context.trace_id == parent.trace_id
        assert context.span_id != parent.span_id
        assert context.sampled  # kept by trace id, whatever the sender's flag said
        with spans.span("handler ledger") as child:
            assert child is not None
            assert child.trace_id == parent.trace_id
            assert child.span_id != context.span_id
