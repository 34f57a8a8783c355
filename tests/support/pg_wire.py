"""A proxy in front of PostgreSQL that counts the client's round trips on the wire.

A round trip is a message after which the client waits for the server's ReadyForQuery: a
simple Query ('Q') or the Sync ('S') that ends an extended-protocol exchange. Counting on
the wire sees what statement listeners cannot: BEGIN and COMMIT, a pre-ping, and a driver
that spends several round trips on one statement.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

from sqlalchemy.engine import make_url

_REQUEST_CODES = {80877103, 80877104}
"""SSLRequest and GSSENCRequest: untyped, and followed by another untyped startup."""
_ROUND_TRIP_TYPES = {b"Q", b"S"}


class RoundTripCounter:
    """Serves `url` (the proxied database URL) until closed; `round_trips` counts every
    connection's. Counting happens before a message is forwarded, so a client that has its
    reply has been counted."""

    def __init__(self, database_url: str) -> None:
        target = make_url(database_url)
        self._dir = tempfile.TemporaryDirectory(prefix="hookyard-pgwire-")
        self._lock = threading.Lock()
        self._round_trips = 0
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        unix_sock = target.query.get("unix_sock")
        if isinstance(unix_sock, str):
            self._upstream: str | tuple[str, int] = unix_sock
            path = str(Path(self._dir.name) / Path(unix_sock).name)
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind(path)
            self.url = target.update_query_dict({"unix_sock": path}).render_as_string(
                hide_password=False
            )
        else:
            self._upstream = (target.host or "127.0.0.1", target.port or 5432)
            self._listener = socket.create_server(("127.0.0.1", 0))
            port = self._listener.getsockname()[1]
            self.url = target.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
        self._listener.listen()
        self._spawn(self._accept)

    @property
    def round_trips(self) -> int:
        with self._lock:
            return self._round_trips

    @contextlib.contextmanager
    def counting(self) -> Iterator[list[int]]:
        """Yields a list that holds, after the block, the round trips made inside it."""
        before = self.round_trips
        made: list[int] = []
        yield made
        made.append(self.round_trips - before)

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(60)
        self._dir.cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            family = socket.AF_UNIX if isinstance(self._upstream, str) else socket.AF_INET
            server = socket.socket(family, socket.SOCK_STREAM)
            try:
                server.connect(self._upstream)
            except OSError:
                client.close()
                server.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            self._spawn(self._client_to_server, client, server)
            self._spawn(self._copy, server, client)

    def _client_to_server(self, client: socket.socket, server: socket.socket) -> None:
        pending = b""
        untyped = True
        with contextlib.suppress(OSError):
            while chunk := client.recv(65536):
                pending += chunk
                while True:
                    header = 4 if untyped else 5
                    if len(pending) < header:
                        break
                    if untyped:
                        (length,) = struct.unpack("!i", pending[:4])
                        size = length
                    else:
                        (length,) = struct.unpack("!i", pending[1:5])
                        size = 1 + length
                    if len(pending) < size:
                        break
                    message, pending = pending[:size], pending[size:]
                    if untyped:
                        code = struct.unpack("!i", message[4:8])[0] if size >= 8 else 0
                        untyped = code in _REQUEST_CODES
                    elif message[:1] in _ROUND_TRIP_TYPES:
                        with self._lock:
                            self._round_trips += 1
                server.sendall(chunk)
        self._close_pair(client, server)

    def _copy(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        self._close_pair(source, sink)

    @staticmethod
    def _close_pair(*sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
