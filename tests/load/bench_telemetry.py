"""What metrics and traces add to one webhook request, against one Stripe verification measured
in the same run: figures, no verdict.

One request's calls, as `functions/webhooks.py` makes them: received, a `webhook` span with a
`publish` span inside, the publish duration and accepted. Measured with nothing configured,
with the Prometheus metrics, with every trace recorded and with one in ten (infra's default).

Run with `python -m tests.load.bench_telemetry` (also part of `make bench`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from common import metrics, spans
from common.config import Settings
from common.signatures import SignedRequest, sign_headers, verifier_for
from common.telemetry import configure_telemetry, shutdown_telemetry

CALLS = 20_000
REPEATS = 5
NOW = 1_700_000_000
SECRET = "whsec_aG9va3lhcmQtc3RhbmRhcmQtd2ViaG9va3Mta2V5LTE="


def _one_request() -> None:
    metrics.webhook_received("stripe")
    with spans.span("webhook stripe", None, "server", {"hookyard.source": "stripe"}) as context:
        with spans.span("publish events", context, "producer"):
            metrics.publish_finished("events", 0.001, ok=True)
        metrics.webhook_accepted("stripe")


def _verify() -> Callable[[], None]:
    body = b'{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{}}}'
    request = SignedRequest(list(sign_headers("stripe", body, SECRET, now=NOW).items()), body)
    verifier = verifier_for("stripe")
    return lambda: verifier.verify(request, [SECRET], NOW)


def _median_us(call: Callable[[], None]) -> float:
    for _ in range(1000):
        call()
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(CALLS):
            call()
        runs.append((time.perf_counter() - start) / CALLS * 1e6)
    return statistics.median(runs)


def _with_traces(ratio: float) -> Callable[[], None]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    class Discard(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    sampler = TraceIdRatioBased(ratio)
    provider = TracerProvider(sampler=ParentBased(sampler, remote_parent_not_sampled=sampler))
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    spans.install(provider.get_tracer("bench"))
    return provider.shutdown


def main() -> None:
    reference = _median_us(_verify())
    figures: list[tuple[str, float]] = []
    try:
        configure_telemetry(Settings(metrics_exporter="none", traces_exporter="none"), "bench")
        figures.append(("nothing configured", _median_us(_one_request)))
        configure_telemetry(Settings(metrics_exporter="prometheus"), "bench")
        figures.append(("metrics (Prometheus)", _median_us(_one_request)))
        for ratio in (1.0, 0.1):
            stop = _with_traces(ratio)
            figures.append((f"metrics + traces, {ratio:g} kept", _median_us(_one_request)))
            stop()
    finally:
        shutdown_telemetry()
    print(f"reference: one Stripe verification {reference:.1f} µs (median of {REPEATS} x {CALLS})")
    print(f"{'per webhook request':<30} {'µs':>8} {'x reference':>12}")
    for label, micros in figures:
        print(f"{label:<30} {micros:>8.1f} {micros / reference:>12.2f}")


if __name__ == "__main__":
    main()
