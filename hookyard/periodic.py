"""A function run every N seconds on a thread, stopped promptly (local stand-in for cron)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from common.logging import get_logger

log = get_logger(__name__)


class Periodic:
    def __init__(self, name: str, interval_s: float, action: Callable[[], object]) -> None:
        self._name = name
        self._interval = interval_s
        self._action = action
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._action()
            except Exception:
                log.exception("periodic task failed", task=self._name)
            self._stop.wait(self._interval)
