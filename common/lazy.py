"""A client built on first use, once, whichever thread gets there first.

Ingest and workers import cheaply and pay for a client (TLS context, gRPC channel) only
when a request needs it; every thread then shares that one pooled client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    def __init__(self, factory: Callable[[], T], value: T | None = None) -> None:
        self._factory = factory
        self._value = value
        self._lock = threading.Lock()

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                value = self._value
                if value is None:
                    value = self._value = self._factory()
        return value

    @property
    def built(self) -> T | None:
        """The value if it exists, without building it (for closing)."""
        return self._value
