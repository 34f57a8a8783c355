"""Response conventions shared by every HTTP entry point.

Problems are RFC 7807 `application/problem+json`; every response carries the same security
headers, whichever function produced it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Request, Response

from common.errors import MethodNotAllowed, Problem

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
}

Handler = Callable[[Request], Response]


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(
        json.dumps(body, separators=(",", ":")),
        status=status,
        mimetype="application/json",
        headers=headers,
    )
    return secure(response)


def empty_response(status: int = 204) -> Response:
    return secure(Response(status=status))


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    headers = {}
    if isinstance(problem, MethodNotAllowed) and "allow" in problem.extensions:
        headers["Allow"] = ", ".join(problem.extensions["allow"])
    response = Response(
        json.dumps(problem.to_dict(instance), separators=(",", ":")),
        status=problem.status,
        mimetype="application/problem+json",
        headers=headers,
    )
    return secure(response)


def require_method(request: Request, *allowed: str) -> None:
    if request.method not in allowed:
        raise MethodNotAllowed(f"{request.method} is not allowed here", allow=list(allowed))


def path_parts(request: Request, prefix: str) -> list[str]:
    """`/admin/accounts/a1` with prefix `/admin` -> ["accounts", "a1"]."""
    rest = request.path[len(prefix) :] if request.path.startswith(prefix) else request.path
    return [part for part in rest.split("/") if part]
