"""Trace context from W3C `traceparent` or the legacy `X-Cloud-Trace-Context`.

The same context travels webhook -> message attributes -> worker -> tasks, so Cloud Logging
groups one event's whole journey under one trace.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from common.headers import HeaderLookup

TRACEPARENT = "traceparent"
"""The header, and the message attribute, that carries the trace onward."""

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d{1,20}))?(?:;o=([01]))?$")


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str
    sampled: bool

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def child(self) -> TraceContext:
        return TraceContext(self.trace_id, secrets.token_hex(8), self.sampled)

    def log_fields(self, project: str) -> dict[str, object]:
        return {
            "logging.googleapis.com/trace": f"projects/{project}/traces/{self.trace_id}",
            "logging.googleapis.com/spanId": self.span_id,
            "logging.googleapis.com/trace_sampled": self.sampled,
        }


def new_trace() -> TraceContext:
    return TraceContext(secrets.token_hex(16), secrets.token_hex(8), sampled=False)


def parse_trace(headers: HeaderLookup) -> TraceContext | None:
    """Reads either header (W3C preferred); malformed or all-zero ids count as absent."""
    tp = headers.get("traceparent")
    if tp:
        m = _TRACEPARENT.match(tp.strip().lower())
        if m and set(m.group(1)) != {"0"} and set(m.group(2)) != {"0"}:
            return TraceContext(m.group(1), m.group(2), bool(int(m.group(3), 16) & 1))
    legacy = headers.get("X-Cloud-Trace-Context") or headers.get("x-cloud-trace-context")
    if legacy:
        m = _CLOUD_TRACE.match(legacy.strip())
        if m and set(m.group(1)) != {"0"}:
            span = int(m.group(2)) if m.group(2) else 0
            span_hex = f"{span & 0xFFFFFFFFFFFFFFFF:016x}" if span else secrets.token_hex(8)
            return TraceContext(m.group(1).lower(), span_hex, m.group(3) == "1")
    return None
