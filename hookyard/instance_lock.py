"""One owner per data directory: an `flock` held for as long as the owner lives.

The kernel drops the lock however the owner ends (stop, exit, crash, SIGKILL), so a dead
owner never blocks the next start; the file holds the owner's pid only to name it when a
second process is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from common.errors import AlreadyRunning

# The owner writes its pid right after locking; a refused reader may look in between.
_PID_READ_ATTEMPTS = 40
_PID_READ_PAUSE_S = 0.05


class InstanceLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Takes the lock or raises `AlreadyRunning` naming the holder; never waits for it."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder_pid(fd)
            os.close(fd)
            raise AlreadyRunning(self.path.parent, pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def _holder_pid(fd: int) -> int | None:
    for _ in range(_PID_READ_ATTEMPTS):
        raw = os.pread(fd, 32, 0).strip()
        if raw.isdigit():
            return int(raw)
        time.sleep(_PID_READ_PAUSE_S)
    return None
