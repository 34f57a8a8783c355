"""functions-framework targets for deployment: `webhook`, `cron`, `admin`, `worker`.

Each target receives every path and routes on `request.path`, exactly as the local stack
does, so one deployment artefact serves whichever function `--target` names.
"""

from __future__ import annotations

import functions_framework
from flask import Request, Response


@functions_framework.http
def webhook(request: Request) -> Response:
    from functions import webhooks

    return webhooks.handle(request)


@functions_framework.http
def cron(request: Request) -> Response:
    from functions import cron as cron_function

    return cron_function.handle(request)


@functions_framework.http
def admin(request: Request) -> Response:
    from functions import admin as admin_api

    return admin_api.handle(request)


@functions_framework.http
def worker(request: Request) -> Response:
    from workers.service import handle

    return handle(request)
