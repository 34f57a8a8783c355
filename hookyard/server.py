"""One WSGI app that mounts every endpoint, as the local stack serves them on one port.

Routing is by the first path segment, exactly as each function routes on `request.path`
when deployed alone behind functions-framework.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask, Request, Response, request

from common.errors import NotFound, Problem
from common.http import Handler, problem_response
from common.logging import get_logger

log = get_logger(__name__)

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class InternalError(Problem):
    pass


def create_app(mounts: Mapping[str, Handler]) -> Flask:
    """`mounts` maps a first path segment (`webhooks`, `admin`, ...) to its handler."""
    app = Flask("hookyard")
    app.url_map.strict_slashes = False

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
    app.add_url_rule("/<path:path>", "dispatch", dispatch, methods=ALL_METHODS)
    return app
