"""The local stack's one front door: each path prefix forwarded to the target process that
serves it, as Google's front end routes to Cloud Run services.

Bodies and responses stream through, so the front door never holds a body in memory and
each target applies its own size limits, from the Content-Length it receives unchanged. The
original Host header goes along, so a target's links and token audiences name the front door.
A target that is down is a 503 problem with Retry-After, never a hang.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from urllib.parse import quote, quote_from_bytes

import httpx
from flask import Request, Response

from common.errors import BodyUnreadable, RequestTimeout, ServiceUnavailable
from common.http import Handler, problem_response
from common.logging import get_logger

log = get_logger(__name__)

_CHUNK = 64 * 1024
# Printable ASCII passes as it came; a decoded path's `%`, `?` and `#` are data, escaped again.
_PATH_SAFE = "".join(sorted(set(string.punctuation) - set("%?#")))
_QUERY_SAFE = "".join(sorted(set(string.punctuation) - set("#")))
# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class _SenderFailed(Exception):
    """The sender's body broke off while being forwarded."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause


def upstream_client(max_connections: int) -> httpx.Client:
    """One pooled, keep-alive client for every upstream: no connection per request."""
    return httpx.Client(
        timeout=httpx.Timeout(120.0, connect=5.0),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        follow_redirects=False,
    )


def forward_to(target: str, base_url: str, client: httpx.Client) -> Handler:
    """A handler that forwards every request it gets to `base_url` (a target process)."""
    base = base_url.rstrip("/")

    def handle(request: Request) -> Response:
        headers = _forwarded_headers(request)
        url = base + upstream_target(request)
        body = _body(request) if _has_body(request) else None
        upstream = client.build_request(request.method, url, headers=headers, content=body)
        try:
            response = client.send(upstream, stream=True)
        except _SenderFailed as exc:
            return problem_response(_sender_problem(exc.cause), request.path)
        except httpx.HTTPError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, _SenderFailed):
                return problem_response(_sender_problem(cause.cause), request.path)
            log.warning("target unreachable", target=target, error=type(exc).__name__)
            problem = ServiceUnavailable(f"the {target} service is not answering; retry shortly")
            answer = problem_response(problem, request.path)
            answer.headers["Retry-After"] = "1"
            return answer
        return _relay(response)

    return handle


def upstream_target(request: Request) -> str:
    """The path and query as the target must see them. `request.path` is percent-decoded, so
    it is escaped again: forwarded decoded, `%00` would be a NUL httpx refuses (a 500 instead
    of the target's 404) and `%2541` would reach the target as `%41`, decoded twice. Dot
    segments are escaped too, or httpx would resolve `/console/..` to another path."""
    segments = quote(request.path, safe=_PATH_SAFE).split("/")
    path = "/".join(s.replace(".", "%2E") if s in {".", ".."} else s for s in segments)
    if not request.query_string:
        return path
    return f"{path}?{quote_from_bytes(request.query_string, safe=_QUERY_SAFE)}"


def _has_body(request: Request) -> bool:
    return (
        bool(request.content_length)
        or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    )


def _forwarded_headers(request: Request) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
    headers.pop("Content-Length", None)
    if request.content_length is not None:
        headers["Content-Length"] = str(request.content_length)
    forwarded_for = request.headers.get("X-Forwarded-For")
    peer = request.remote_addr or "unknown"
    headers["X-Forwarded-For"] = f"{forwarded_for}, {peer}" if forwarded_for else peer
    return headers


def _body(request: Request) -> Iterator[bytes]:
    stream = request.stream
    while True:
        try:
            chunk = stream.read(_CHUNK)
        except Exception as exc:  # werkzeug reports a stalled or broken body many ways
            raise _SenderFailed(exc) from exc
        if not chunk:
            return
        yield chunk


def _sender_problem(cause: BaseException) -> BodyUnreadable | RequestTimeout:
    while cause is not None:
        if isinstance(cause, TimeoutError):
            return RequestTimeout("the body did not arrive in time")
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    return BodyUnreadable("the body is malformed or ended early")


def _relay(upstream: httpx.Response) -> Response:
    headers = [
        (k, v)
        for k, v in upstream.headers.multi_items()
        if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
    ]
    length = upstream.headers.get("Content-Length")

    def chunks() -> Iterator[bytes]:
        try:
            yield from upstream.iter_raw(_CHUNK)
        finally:
            upstream.close()

    response = Response(chunks(), status=upstream.status_code, headers=headers)
    if length is not None:
        response.headers["Content-Length"] = length
    return response
