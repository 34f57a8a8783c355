"""Response conventions shared by every HTTP entry point.

Problems are RFC 7807 `application/problem+json`; every response carries the same security
headers, whichever function produced it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Request, Response
from werkzeug.exceptions import HTTPException

from common.errors import (
    BodyUnreadable,
    Forbidden,
    MethodNotAllowed,
    PayloadTooLarge,
    Problem,
    RequestTimeout,
    UnsupportedMediaType,
)

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
    """Every response of every function passes here."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return _leaving_the_request_unread(response)


def _leaving_the_request_unread(response: Response) -> Response:
    """functions-framework reads whatever is left of the request into memory after any
    response that is not streamed (its `read_request` hook), so a body refused unread (a
    413, a 401) would be held whole all the same, 50 MB as readily as 50 bytes. A body given
    as an iterator counts as streamed; gunicorn then drains or drops the unread rest in small
    pieces. Content-Length, already set from the bytes, stays."""
    if not response.is_streamed:
        response.response = iter((response.get_data(),))
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
    if problem.close_connection:
        headers["Connection"] = "close"
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


_READ_CHUNK = 64 * 1024


def read_body(request: Request, limit: int) -> bytes:
    """The whole body, never more than `limit` bytes of it in memory.

    Refused from Content-Length before anything is read; a chunked body is read up to
    limit+1 bytes. A body that stops short of its Content-Length, malformed chunking, or a
    sender that goes quiet (the server's socket timeout) is a 4xx that closes the connection.
    """
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body exceeds this endpoint's {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= limit:
            chunk = request.stream.read(min(_READ_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (OSError, ValueError, HTTPException) as exc:
        if _timed_out(exc):
            raise RequestTimeout("the body did not arrive in time") from exc
        raise BodyUnreadable("the body is malformed or ended early") from exc
    if size > limit:
        raise PayloadTooLarge(f"the body exceeds this endpoint's {limit}-byte limit")
    if request.content_length is not None and size < request.content_length:
        raise BodyUnreadable("the body ended before its Content-Length")
    return b"".join(chunks)


def _timed_out(exc: BaseException | None) -> bool:
    """werkzeug reports a socket timeout mid-body as a disconnect; the cause tells them apart."""
    while exc is not None:
        if isinstance(exc, TimeoutError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


_CROSS_SITE = frozenset({"cross-site", "same-site"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def reject_cross_site(request: Request) -> None:
    """For surfaces only servers call (push, tasks, cron, admin, emulators): a browser
    request from another site or origin is refused (403). Google's callers send neither
    `Origin` nor `Sec-Fetch-Site`; webhooks are not guarded (senders sign their bodies)."""
    if request.headers.get("Sec-Fetch-Site", "").strip().lower() in _CROSS_SITE:
        raise Forbidden("cross-site browser requests are refused")
    origin = request.headers.get("Origin")
    if origin is not None and not _same_origin(origin, request):
        raise Forbidden("requests from another origin are refused")


def require_json_body(request: Request) -> None:
    """A body on those surfaces must be JSON (415): a page cannot send that cross-origin
    without a CORS preflight, which nothing here answers. Every Hookyard task and push sets
    it, and Cloud Tasks forwards the task's own Content-Type."""
    if request.method in _BODY_METHODS and _has_body(request) and not _is_json(request.mimetype):
        raise UnsupportedMediaType("the body must be application/json")


def _same_origin(origin: str, request: Request) -> bool:
    """Scheme aside (TLS may end at a proxy), the origin must name the host asked for."""
    try:
        theirs = urlsplit(origin.strip())
        ours = urlsplit(f"{theirs.scheme}://{request.host}")
        default = 443 if theirs.scheme == "https" else 80
        return (
            theirs.scheme in {"http", "https"}
            and theirs.hostname is not None
            and theirs.hostname == ours.hostname
            and (theirs.port or default) == (ours.port or default)
        )
    except ValueError:
        return False


def _has_body(request: Request) -> bool:
    if request.headers.get("Transfer-Encoding", "").strip():
        return True
    return bool(request.content_length)


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )
