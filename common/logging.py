"""structlog configured for Cloud Logging: one JSON object per line on stdout.

`severity` and `message` are the keys Cloud Logging lifts out of the payload; the trace and
the event's source/id are bound per request with `bind_context` so every line carries them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from common.tracing import TraceContext

_SEVERITY = {
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARNING",
    "warn": "WARNING",
    "error": "ERROR",
    "exception": "ERROR",
    "critical": "CRITICAL",
}
_SENSITIVE = ("secret", "signature", "token", "password", "authorization")
_configured = False


def _cloud_fields(_: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event["severity"] = _SEVERITY.get(method, "DEFAULT")
    event["message"] = event.pop("event", "")
    return event


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Last line of defence: a key that names a secret never reaches the output."""
    for key in list(event):
        if any(word in key.lower() for word in _SENSITIVE):
            event[key] = "[redacted]"
    return event


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    global _configured
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _redact,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
            structlog.processors.format_exc_info,
            _cloud_fields,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    _configured = True


def get_logger(name: str) -> Any:
    if not _configured:
        from common.config import get_settings

        settings = get_settings()
        configure_logging(settings.log_level, settings.log_format)
    return structlog.get_logger(name)


def bind_context(trace: TraceContext | None = None, project: str = "", **fields: Any) -> None:
    """Starts a request's context afresh: nothing leaks from the thread's previous request."""
    structlog.contextvars.clear_contextvars()
    if trace is not None:
        structlog.contextvars.bind_contextvars(**trace.log_fields(project))
    add_context(**fields)


def add_context(**fields: Any) -> None:
    structlog.contextvars.bind_contextvars(**{k: v for k, v in fields.items() if v is not None})
