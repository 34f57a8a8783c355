"""One WSGI app that mounts every endpoint, as the local stack serves them on one port, and
the threaded HTTP server that carries it.

Routing is by the first path segment, exactly as each function routes on `request.path`
when deployed alone behind functions-framework.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Mapping
from typing import Any

from flask import Flask, Request, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import PathConverter
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from common.errors import NotFound, Problem, ServiceUnavailable
from common.http import (
    SECURITY_HEADERS,
    Handler,
    json_response,
    problem_response,
    require_method,
    secure,
)
from common.logging import get_logger
from common.openapi import openapi_document
from common.topology import Topology

log = get_logger(__name__)

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class InternalError(Problem):
    pass


class RoutingProblem(Problem):
    """What werkzeug itself refuses (a malformed request line, say), in problem JSON."""

    slug = "http-error"

    def __init__(self, exc: HTTPException) -> None:
        super().__init__(exc.description or exc.name)
        self.status = exc.code or 400  # type: ignore[misc]
        self.title = exc.name  # type: ignore[misc]


class AnyPath(PathConverter):
    """Every path reaches a handler, newlines included, so each one answers in problem JSON."""

    regex = r"[\s\S]*"
    part_isolating = False


def create_app(mounts: Mapping[str, Handler]) -> Flask:
    """`mounts` maps a first path segment (`webhooks`, `admin`, ...) to its handler."""
    app = Flask("hookyard")
    app.url_map.strict_slashes = False
    app.url_map.converters["anypath"] = AnyPath
    app.after_request(secure)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return problem_response(RoutingProblem(exc), request.path)

    def dispatch(path: str = "") -> Response:
        current: Request = request._get_current_object()  # type: ignore[attr-defined]
        segment = path.split("/", 1)[0]
        handler = mounts.get(segment)
        try:
            if handler is None:
                raise NotFound(f"no route for /{path}")
            return handler(current)
        except Problem as problem:
            return problem_response(problem, current.path)
        except Exception:
            log.exception("unhandled error", path=current.path)
            return problem_response(InternalError("unexpected error; see the logs"), current.path)

    app.add_url_rule("/", "root", dispatch, methods=ALL_METHODS)
    app.add_url_rule("/<anypath:path>", "dispatch", dispatch, methods=ALL_METHODS)
    return app


def openapi_handler(topology: Topology) -> Handler:
    """Serves the document with `servers` pointing at whoever asked, so tools can follow it."""

    def handle(request: Request) -> Response:
        try:
            require_method(request, "GET", "HEAD")
        except Problem as problem:
            return problem_response(problem, request.path)
        document = openapi_document(topology)
        document["servers"] = [{"url": request.host_url.rstrip("/"), "description": "this server"}]
        return json_response(document)

    return handle


class HardenedRequestHandler(WSGIRequestHandler):
    """HTTP/1.1 keep-alive, no Nagle, a socket timeout, and problem JSON for the errors the
    standard library answers itself (a request line or headers too long, a garbled request).

    No Nagle: werkzeug writes headers and body separately, and Nagle plus delayed ACKs would
    add ~40 ms to every hop of the pipeline. The timeout bounds every read and write, so a
    sender that stalls mid-body or an idle keep-alive connection gives its thread back.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: HardenedWSGIServer

    def setup(self) -> None:
        self.timeout = self.server.read_timeout_s  # type: ignore[misc]
        super().setup()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        title = self.responses.get(code, ("Error", ""))[0]
        body = problem_bytes(code, title, message or title)
        # A garbled request line leaves the HTTP/0.9 default, which would drop the status line.
        self.request_version = self.protocol_version
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        self.send_response(code, title)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class HardenedWSGIServer(ThreadedWSGIServer):
    """A thread per connection, at most `max_connections` of them.

    Beyond the cap a connection gets an immediate 503 and is closed without a thread, so a
    flood of slow or idle connections cannot starve the process of threads and memory.
    """

    def __init__(
        self,
        host: str,
        port: int,
        app: Any,
        *,
        max_connections: int,
        read_timeout_s: float,
        fd: int | None = None,
    ) -> None:
        """`fd`: a listening socket bound by someone else (the supervisor) to serve on."""
        super().__init__(host, port, app, handler=HardenedRequestHandler, fd=fd)
        self.read_timeout_s = read_timeout_s
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, conn: socket.socket) -> None:
        problem = ServiceUnavailable("too many open connections; retry shortly")
        body = problem_bytes(problem.status, problem.title, problem.detail)
        head = (
            f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        )
        try:
            conn.settimeout(1.0)
            conn.sendall(head.encode("ascii") + body)
        except OSError:
            pass
        self.shutdown_request(conn)


def problem_bytes(status: int, title: str, detail: str) -> bytes:
    slug = "http-error" if status != 503 else "unavailable"
    return json.dumps(
        {
            "type": f"https://hookyard.dev/problems/{slug}",
            "title": title,
            "status": status,
            "detail": detail,
        }
    ).encode()
