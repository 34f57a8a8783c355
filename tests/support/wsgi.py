"""Serve a WSGI app on a real socket for the length of a `with` block."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flask import Flask, Request, Response, request
from werkzeug.serving import make_server


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """The app's base URL; the server is shut down and its socket closed on exit."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=60)
        server.server_close()


def target_app(name: str, target: Callable[[Request], Response]) -> Flask:
    """Every path to one functions-framework target, as Cloud Run routes to a service."""
    app = Flask(name)

    def handle(path: str) -> Response:
        del path
        return target(request._get_current_object())  # type: ignore[attr-defined]

    app.add_url_rule("/<path:path>", name, handle, methods=["GET", "POST", "PUT"])
    return app


def rebuild_targets() -> None:
    """Forget the settings, adapters and targets a process built, so `main`'s targets are
    built again from the environment on their next request."""
    import main
    from common.config import get_settings
    from common.messaging.publisher import get_publisher, get_task_queue
    from common.secrets import get_secret_store

    for cached in (get_settings, get_publisher, get_task_queue, get_secret_store, main.built):
        cached.cache_clear()
