"""A scripted HTTP receiver on 127.0.0.1 for outbound notifications: records, then answers."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    url: str = ""
    statuses: list[int] = field(default_factory=list)
    """Answers in order; 204 once the list runs out."""
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, object], start_response: object) -> object:
        request = Request(environ)  # type: ignore[arg-type]
        with self.lock:
            self.received.append(Received(dict(request.headers), request.get_data(), time.time()))
            status = self.statuses.pop(0) if self.statuses else 204
        return Response(status=status)(environ, start_response)  # type: ignore[arg-type]


@contextmanager
def receiver(
    statuses: list[int] | None = None, tls: ssl.SSLContext | None = None
) -> Iterator[Receiver]:
    app = Receiver(statuses=list(statuses or []))
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=tls)
    scheme = "https" if tls else "http"
    app.url = f"{scheme}://127.0.0.1:{server.server_port}/hooks/balance"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield app
    finally:
        server.shutdown()
        thread.join(timeout=60)
        server.server_close()
