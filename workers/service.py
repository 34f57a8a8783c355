"""The worker service as deployed: push endpoints plus health, on the process-wide engine."""

from __future__ import annotations

from functools import lru_cache

from flask import Request, Response

from common.config import get_settings
from common.db.engine import get_engine
from common.errors import NotFound
from common.health import Health, database_ready
from common.http import problem_response
from workers.push import Worker


@lru_cache(maxsize=1)
def _worker() -> Worker:
    return Worker(get_engine(), get_settings().gcp_project)


@lru_cache(maxsize=1)
def _health() -> Health:
    return Health(database_ready(get_engine))


def handle(request: Request) -> Response:
    if request.path.startswith("/pubsub/"):
        return _worker().handle(request)
    if request.path.startswith("/health/"):
        return _health().handle(request)
    return problem_response(NotFound(f"no route for {request.path}"), request.path)
