"""`hookyard listen` as the developer runs it, a process of its own, for tests to drive."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hookyard.stack import LocalStack
from tests.support.receiver import Received
from tests.support.stack import ADMIN_TOKEN, wait_for

BOUND_S = 120.0
SECRET_LINE = re.compile(r"signing secret is (whsec_[A-Za-z0-9+/=]+)")


class Listening:
    """A running `hookyard listen`: its JSON lines and its stderr, read as they come."""

    def __init__(self, url: str, data_dir: Path, *args: str) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("HOOKYARD_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hookyard", "listen", "--url", url,
             "--token", ADMIN_TOKEN, *args],
            env={**clean, "HOOKYARD_DATA_DIR": str(data_dir)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream, into), daemon=True)
            for stream, into in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def secret(self) -> str:
        """Waits for "Ready!" and returns the key it printed."""
        found = wait_for(lambda: SECRET_LINE.search("".join(self.stderr)), timeout=BOUND_S)
        assert "Ready!" in "".join(self.stderr)
        return str(found.group(1))

    def lines(self, count: int) -> list[dict[str, Any]]:
        wait_for(lambda: len(self.stdout) >= count or self.proc.poll() is not None, BOUND_S)
        assert len(self.stdout) >= count, (self.stdout, self.stderr)
        return [json.loads(line) for line in self.stdout]

    def stop(self, signum: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=BOUND_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=BOUND_S)
            for reader in self._readers:
                reader.join(timeout=BOUND_S)
        return code


@contextmanager
def listening(stack: LocalStack, data_dir: Path, *args: str) -> Iterator[Listening]:
    process = Listening(stack.url, data_dir, *args)
    try:
        yield process
    finally:
        process.stop(signal.SIGKILL)


def by_event(requests: list[Received]) -> dict[str, list[Received]]:
    found: dict[str, list[Received]] = {}
    for request in requests:
        found.setdefault(request.headers["Hookyard-Event-Id"], []).append(request)
    return found
