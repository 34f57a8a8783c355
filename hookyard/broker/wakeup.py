"""The dispatcher's alarm clock: it sleeps until there may be work, never polls.

pg8000 has no blocking "wait for NOTIFY", so a dedicated connection LISTENs and its socket is
watched with `select` next to a socketpair that other threads in this process write to
(a publish, a freed push slot, stop). A `threading.Event` cannot sit in the same `select`.

Bytes of a notification may already sit in pg8000's read buffer when `select` starts and so
never wake it; that is harmless because the dispatcher scans for due work after every wake,
and such a notification's transaction had committed before that scan began.
"""

from __future__ import annotations

import select
import socket
import time
from contextlib import suppress
from typing import Any

from sqlalchemy.engine import Engine

from common.logging import get_logger

log = get_logger(__name__)

# Without a listening connection, other processes' publishes wait for the next reconnect.
_RECONNECT_EVERY_S = 5.0


class Wakeup:
    def __init__(self, engine: Engine, channel: str) -> None:
        self._engine = engine
        self._channel = channel
        self._receiver, self._sender = socket.socketpair()
        self._receiver.setblocking(False)
        self._sender.setblocking(False)
        self._listener: Any = None
        self._next_connect = 0.0

    def set(self) -> None:
        """Callable from any thread; wakes a current or the next `wait`."""
        with suppress(OSError):  # a full pair already holds a pending wake
            self._sender.send(b"\0")

    def wait(self, timeout: float) -> None:
        if self._listener is None and time.monotonic() >= self._next_connect and self._connect():
            return  # a publish committed before LISTEN took effect needs a fresh scan
        watched: list[Any] = [self._receiver]
        sock = None if self._listener is None else self._listener._usock
        if sock is None:
            timeout = min(timeout, self._next_connect - time.monotonic())
        else:
            watched.append(sock)
        readable, _, _ = select.select(watched, [], [], max(timeout, 0.0))
        if self._receiver in readable:
            with suppress(BlockingIOError):
                while self._receiver.recv(4096):
                    pass
        if sock is not None and sock in readable:
            self._drain_notifications()

    def close(self) -> None:
        self._drop_listener()
        self._receiver.close()
        self._sender.close()

    def _connect(self) -> bool:
        self._next_connect = time.monotonic() + _RECONNECT_EVERY_S
        conn: Any = None
        try:
            proxied = self._engine.raw_connection()
            conn = proxied.dbapi_connection
            # Off the pool for good: a LISTENing session must never serve other queries.
            proxied.detach()
            conn.commit()  # a transaction left open would hold notifications back
            conn.autocommit = True
            cursor = conn.cursor()
            cursor.execute(f'LISTEN "{self._channel}"')
            cursor.close()
        except Exception as exc:
            log.warning("broker LISTEN failed", error=type(exc).__name__)
            if conn is not None:
                with suppress(Exception):
                    conn.close()
            return False
        self._listener = conn
        return True

    def _drain_notifications(self) -> None:
        """A round trip makes pg8000 read the pending NotificationResponse messages."""
        try:
            conn = self._listener
            cursor = conn.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            cursor.close()
            conn.notifications.clear()
        except Exception as exc:
            log.warning("broker listen connection lost", error=type(exc).__name__)
            self._drop_listener()
            self._next_connect = 0.0

    def _drop_listener(self) -> None:
        if self._listener is not None:
            with suppress(Exception):
                self._listener.close()
            self._listener = None
