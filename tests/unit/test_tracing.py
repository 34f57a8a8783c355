from __future__ import annotations

from common.tracing import TraceContext, parse_trace


def test_traceparent_preferred_and_parsed() -> None:
    ctx = parse_trace(
        {
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "X-Cloud-Trace-Context": "11111111111111111111111111111111/1;o=0",
        }
    )
    assert ctx == TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True)


def test_legacy_header_span_is_decimal_converted_to_hex() -> None:
    ctx = parse_trace({"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/255;o=1"})
    assert ctx is not None
    assert ctx.trace_id == "105445aa7843bc8bf206b12000100000"
    assert ctx.span_id == "00000000000000ff"
    assert ctx.sampled


def test_malformed_or_zero_ids_are_ignored() -> None:
    assert parse_trace({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}) is None
    assert parse_trace({"traceparent": "garbage"}) is None
    assert parse_trace({}) is None


def test_log_fields_and_roundtrip() -> None:
    ctx = TraceContext("a" * 32, "b" * 16, False)
    assert parse_trace({"traceparent": ctx.traceparent}) == ctx
    fields = ctx.log_fields("proj")
    assert fields["logging.googleapis.com/trace"] == f"projects/proj/traces/{'a' * 32}"
    assert ctx.child().trace_id == ctx.trace_id
    assert ctx.child().span_id != ctx.span_id
