"""One WSGI app that mounts every endpoint, as the local stack serves them on one port.

Routing is by the first path segment, exactly as each function routes on `request.path`
when deployed alone behind functions-framework.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask, Request, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import PathConverter

from common.errors import NotFound, Problem
from common.http import Handler, json_response, problem_response, require_method, secure
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
