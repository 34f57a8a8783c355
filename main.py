"""functions-framework targets for deployment: `webhook`, `cron`, `admin`, `worker`.

Each target receives every path and routes on `request.path`, exactly as the local stack
does, so one deployment artefact serves whichever function `--target` names. A target is
built by `composition` on its first request and imports only its own code, so a deployment
loads only its own function (the webhook target never loads the database layer) and none of
the CLI's terminal libraries.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import functions_framework
from flask import Request, Response
from werkzeug.exceptions import HTTPException

from common.lean_imports import CLI_EXTRAS, without_modules

if TYPE_CHECKING:
    from composition.targets import Target, TargetName


@cache
def built(target: TargetName) -> Target:
    """The process's target, built on its first request from settings by the composition
    root the local stack uses too; `built.cache_clear()` rebuilds it (tests)."""
    with without_modules(*CLI_EXTRAS):
        from common.config import get_settings
        from common.telemetry import configure_telemetry
        from common.topology import get_topology
        from composition.adapters import from_settings
        from composition.targets import Composition

        settings = get_settings()
        configure_telemetry(settings, target)
        return Composition(settings, from_settings(settings), get_topology()).build(target)


def _serve(target: TargetName, request: Request) -> Response:
    handle = built(target).handle
    from common.telemetry import own_metrics

    page = own_metrics(request)
    return page if page is not None else handle(request)


@functions_framework.http
def webhook(request: Request) -> Response:
    return _serve("webhook", request)


@functions_framework.http
def cron(request: Request) -> Response:
    return _serve("cron", request)


@functions_framework.http
def admin(request: Request) -> Response:
    return _serve("admin", request)


@functions_framework.http
def worker(request: Request) -> Response:
    return _serve("worker", request)


@functions_framework.errorhandler(HTTPException)
def unrouted(error: HTTPException) -> Response:
    """functions-framework answers what never reaches a target (a path its route cannot
    match, such as one holding a line break; `/robots.txt`) with its own HTML page; every
    answer here is problem JSON. Outside functions-framework this registers nothing."""
    from common.errors import BadRequest, MethodNotAllowed, NotFound, PayloadTooLarge, Problem
    from common.http import problem_response

    by_status: dict[int | None, type[Problem]] = {
        400: BadRequest, 405: MethodNotAllowed, 413: PayloadTooLarge
    }  # fmt: skip
    return problem_response(by_status.get(error.code, NotFound)("no such resource"))
