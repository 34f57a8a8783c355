"""`/health/live` answers while the process runs; `/health/ready` only when it can serve."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Request, Response
from sqlalchemy.engine import Engine

from common.errors import NotFound, Problem, ServiceUnavailable
from common.http import json_response, path_parts, problem_response, require_method

ReadyCheck = Callable[[], str | None]


@dataclass
class Health:
    """`ready_check` returns None when ready, else the reason it is not."""

    ready_check: ReadyCheck

    def handle(self, request: Request) -> Response:
        try:
            require_method(request, "GET", "HEAD")
            match path_parts(request, "/health"):
                case ["live"]:
                    return json_response({"status": "live"})
                case ["ready"]:
                    reason = self._check()
                    if reason is not None:
                        raise ServiceUnavailable(reason)
                    return json_response({"status": "ready"})
            raise NotFound("no such health probe")
        except Problem as problem:
            return problem_response(problem, request.path)

    def _check(self) -> str | None:
        try:
            return self.ready_check()
        except Exception as exc:
            return f"readiness check failed: {type(exc).__name__}"


def database_ready(engine_factory: Callable[[], Engine]) -> ReadyCheck:
    def check() -> str | None:
        from common.db import migrate

        engine = engine_factory()
        if not migrate.is_current(engine):
            return "database schema is not at the current migration"
        return None

    return check
