"""One trace id from the webhook through the worker to the notification task: in the log
lines each of them writes, and in the spans they export, chained parent to child."""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from common import spans
from tests.support.postgres import TestServer
from tests.support.receiver import receiver
from tests.support.stack import admin, running_stack, signed_stripe, stripe_event, wait_for

TRACE_FIELD = "logging.googleapis.com/trace"


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider, exporter
    finally:
        spans.install(None)
        provider.shutdown()


def _span(found: list[ReadableSpan], name: str) -> ReadableSpan:
    matching = [s for s in found if s.name == name]
    assert len(matching) == 1, [s.name for s in found]
    return matching[0]


def _parent_of(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.parent is not None, child.name
    return child.parent.span_id == parent.context.span_id


def test_one_trace_from_webhook_to_notification(
    pg_server: TestServer,
    database: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exported = tracing
    with (
        receiver() as hook,
        running_stack(pg_server, database, tmp_path) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=60)) as client,
    ):
        # The stack configured no tracer (none is exported by default): the test's own.
        spans.install(provider.get_tracer("test"))
        client.put("/admin/accounts/tr1", json={"currency": "usd", "notify_url": hook.url})
        body = stripe_event("evt_traced", "payment_intent.succeeded", "tr1", amount_received=5)
        capfd.readouterr()
        response = client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))
        assert response.status_code == 202
        wait_for(lambda: hook.received, timeout=60)
        wait_for(lambda: any(s.name == "task notifications" for s in exported.get_finished_spans()))
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line[:1] == "{"]
    webhook = next(line for line in lines if line["message"] == "webhook accepted")
    worker = next(line for line in lines if line["message"] == "ledger updated")
    task = next(line for line in lines if line["message"] == "notification attempt")
    trace = webhook[TRACE_FIELD]
    assert worker[TRACE_FIELD] == trace
    assert task[TRACE_FIELD] == trace

    trace_id = int(trace.rsplit("/", 1)[1], 16)
    found = list(exported.get_finished_spans())
    chain = [
        _span(found, "webhook stripe"),
        _span(found, "publish events"),
        _span(found, "push ledger"),
        _span(found, "handler ledger"),
        _span(found, "task notifications"),
    ]
    assert [s.context.trace_id for s in chain] == [trace_id] * len(chain)
    assert chain[0].parent is None  # the sender sent no traceparent: the trace starts here
    for parent, child in pairwise(chain):
        assert _parent_of(child, parent), (child.name, parent.name)
    assert _parent_of(_span(found, "push event-log"), chain[1])
    assert chain[2].attributes is not None
    assert chain[2].attributes["hookyard.outcome"] == "ack"
