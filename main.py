"""functions-framework targets for deployment: `webhook`, `cron`, `admin`, `worker`.

Each target receives every path and routes on `request.path`, exactly as the local stack
does, so one deployment artefact serves whichever function `--target` names. A target
imports its code on its first request, so a deployment loads only its own function (the
webhook target never loads the database layer) and none of the CLI's terminal libraries.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache

import functions_framework
from flask import Request, Response

from common.lean_imports import CLI_EXTRAS, without_modules

HANDLERS = {
    "webhook": "functions.webhooks",
    "cron": "functions.cron",
    "admin": "functions.admin",
    "worker": "workers.service",
}


@cache
def _handler(target: str) -> Callable[[Request], Response]:
    with without_modules(*CLI_EXTRAS):
        module = importlib.import_module(HANDLERS[target])
    handle: Callable[[Request], Response] = module.handle
    return handle


@functions_framework.http
def webhook(request: Request) -> Response:
    return _handler("webhook")(request)


@functions_framework.http
def cron(request: Request) -> Response:
    return _handler("cron")(request)


@functions_framework.http
def admin(request: Request) -> Response:
    return _handler("admin")(request)


@functions_framework.http
def worker(request: Request) -> Response:
    return _handler("worker")(request)
