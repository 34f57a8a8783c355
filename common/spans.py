"""Spans along an event's path (webhook → publish → push → handler → task), on the trace the
logs carry.

The trace travels as `TraceContext` (common/tracing.py) in message attributes and task
headers. A span starts as the child of that context, so its trace id is the one the logs
name, and what it yields is the context its children must carry: the span's own. With no
tracer installed nothing is imported and `span` yields the context it was given, so the
logs and attributes carry exactly what they did before.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

from common.tracing import TraceContext

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

SpanKind = Literal["server", "producer", "consumer", "internal"]

_tracer: Tracer | None = None


def install(tracer: Tracer | None) -> None:
    global _tracer
    _tracer = tracer


def enabled() -> bool:
    return _tracer is not None


@contextmanager
def span(
    name: str,
    parent: TraceContext | None = None,
    kind: SpanKind = "internal",
    attributes: Mapping[str, str | int] | None = None,
) -> Iterator[TraceContext | None]:
    """A span under `parent` (a remote context), else under the current span, else a new
    trace. Yields the span's context; without a tracer, `parent` unchanged."""
    tracer = _tracer
    if tracer is None:
        yield parent
        return
    from opentelemetry import trace

    context = None
    if parent is not None:
        remote = trace.SpanContext(
            trace_id=int(parent.trace_id, 16),
            span_id=int(parent.span_id, 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED if parent.sampled else 0),
        )
        context = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    with tracer.start_as_current_span(
        name, context=context, kind=trace.SpanKind[kind.upper()], attributes=attributes
    ) as current:
        own = current.get_span_context()
        yield TraceContext(f"{own.trace_id:032x}", f"{own.span_id:016x}", own.trace_flags.sampled)


def set_attribute(key: str, value: str | int) -> None:
    """On the current span, when there is one (an outcome known only at the end)."""
    if _tracer is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attribute(key, value)
