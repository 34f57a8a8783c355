"""The pure parts of metrics: bounded attributes, and the front door's page merge."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from common import metrics, spans
from common.tracing import TraceContext
from hookyard.metric_families import merge_pages


def test_a_name_outside_the_topology_is_unknown() -> None:
    known = {"stripe", "github"}
    assert metrics.bounded_name("stripe", known) == "stripe"
    assert metrics.bounded_name("stripe-evt_123", known) == "unknown"
    assert metrics.bounded_name(None, known) == "unknown"


def test_reasons_lose_the_values_that_name_things() -> None:
    label = metrics.reason_label
    assert label("unknown account 'acct_404'") == "unknown account '…'"
    assert label("unknown account 'acct_9'") == label("unknown account 'acct_404'")
    assert label('currency "eur" does not match "usd"') == "currency '…' does not match '…'"
    assert label("amount 123456 over bigint") == "amount N over bigint"
    assert label("") == "unknown"
    assert label(None) == "unknown"
    assert len(label("x" * 10_000)) == metrics.MAX_REASON_CHARS
    assert label("two\n  lines") == "two lines"


def test_observed_series_are_capped_with_the_rest_folded_into_other() -> None:
    counts = [(("pending", f"reason {chr(97 + i)}"), float(i)) for i in range(10)]
    counts.append((("pending", "reason j"), 5.0))  # same labels twice: summed
    capped = metrics.bounded_counts(counts, limit=4)
    assert len(capped) == 4
    assert capped[("pending", "reason j")] == 14.0
    assert capped[("pending", "reason i")] == 8.0
    assert capped[("pending", "reason h")] == 7.0
    assert capped[("pending", "other")] == sum(range(7))
    few = metrics.bounded_counts([(("a", "b"), 1.0)], limit=4)
    assert few == {("a", "b"): 1.0}


def test_calls_without_instruments_do_nothing() -> None:
    metrics.install(None)
    metrics.webhook_received("stripe")
    metrics.push_attempt("ledger", "ack", 2, "2026-01-01T00:00:00.000Z")
    metrics.replay_progress(1, 1)


def test_without_a_tracer_a_span_hands_back_its_parent() -> None:
    spans.install(None)
    parent = TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", False)
    with spans.span("webhook stripe", parent, "server") as context:
        assert context is parent
    with spans.span("handler ledger") as context:
        assert context is None


WEBHOOK_PAGE = """\
# HELP hookyard_webhooks_received_total webhook requests received
# TYPE hookyard_webhooks_received_total counter
hookyard_webhooks_received_total{source="stripe"} 3.0
# HELP hookyard_publish_duration_seconds publish calls
# TYPE hookyard_publish_duration_seconds histogram
hookyard_publish_duration_seconds_bucket{le="0.1",topic="events"} 2.0
hookyard_publish_duration_seconds_bucket{le="+Inf",topic="events"} 3.0
hookyard_publish_duration_seconds_count{topic="events"} 3.0
hookyard_publish_duration_seconds_sum{topic="events"} 0.25
"""
WORKER_PAGE = """\
# HELP hookyard_publish_duration_seconds publish calls
# TYPE hookyard_publish_duration_seconds histogram
hookyard_publish_duration_seconds_bucket{le="0.1",topic="events"} 1.0
hookyard_publish_duration_seconds_bucket{le="+Inf",topic="events"} 1.0
hookyard_publish_duration_seconds_count{topic="events"} 1.0
hookyard_publish_duration_seconds_sum{topic="events"} 0.01
# HELP hookyard_webhooks_received_total a gauge by mistake
# TYPE hookyard_webhooks_received_total gauge
hookyard_webhooks_received_total 9.0
"""


def test_merged_pages_have_one_family_each_labelled_by_target() -> None:
    page = merge_pages([("webhook", WEBHOOK_PAGE), ("worker", WORKER_PAGE)]).decode()
    assert len(re.findall(r"^# TYPE hookyard_publish_duration_seconds ", page, re.M)) == 1
    assert len(re.findall(r"^# HELP hookyard_publish_duration_seconds ", page, re.M)) == 1
    families = {f.name: f for f in text_string_to_metric_families(page)}
    counts = {
        s.labels["target"]: s.value
        for s in families["hookyard_publish_duration_seconds"].samples
        if s.name.endswith("_count")
    }
    assert counts == {"webhook": 3.0, "worker": 1.0}
    received = families["hookyard_webhooks_received"]
    assert received.type == "counter"  # the worker's conflicting gauge is dropped
    assert [(s.labels, s.value) for s in received.samples] == [
        ({"source": "stripe", "target": "webhook"}, 3.0)
    ]


def test_merging_nothing_is_an_empty_page() -> None:
    assert merge_pages([]) == b""
