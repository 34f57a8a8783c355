"""`/console`: the operators' pages, served by the admin target beside the API they call.

The pages hold no data, so they are served without a credential: the browser asks for the
admin token once, keeps it in `sessionStorage` and calls `/admin/...` with it as a bearer
token. No cookie is ever set, so there is nothing for another site to ride on (no CSRF), and
the admin API keeps refusing cross-site browsers on its own. Every page is the same shell;
the script renders what the path names, so a page is a real URL that links and reloads.
"""

from __future__ import annotations

from flask import Request, Response

from common.errors import NotFound, Problem
from common.http import problem_response, require_method, secure
from functions.console.assets import Asset, asset_for

PREFIX = "/console"

CONSOLE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def is_console_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def serve_console(request: Request) -> Response:
    try:
        require_method(request, "GET", "HEAD")
        asset = asset_for(request.path.removeprefix(PREFIX))
        if asset is None:
            raise NotFound("no such console page")
        return _asset_response(asset)
    except Problem as problem:
        return _with_console_headers(problem_response(problem, request.path))


def _asset_response(asset: Asset) -> Response:
    response = Response(asset.body(), status=200, mimetype=asset.media_type)  # text/*: utf-8
    return _with_console_headers(secure(response))


def _with_console_headers(response: Response) -> Response:
    response.headers.update(CONSOLE_HEADERS)
    return response
