"""The worker target's routes: push deliveries, tasks and health on one service, as deployed.
`composition.targets` builds the parts; this only dispatches by path."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Request, Response

from common.errors import NotFound
from common.http import Handler, problem_response


@dataclass(frozen=True)
class WorkerRoutes:
    push: Handler
    tasks: Handler
    health: Handler

    def handle(self, request: Request) -> Response:
        route = {"pubsub": self.push, "tasks": self.tasks, "health": self.health}.get(
            request.path.split("/", 2)[1]
        )
        if route is None:
            return problem_response(NotFound(f"no route for {request.path}"), request.path)
        return route(request)
