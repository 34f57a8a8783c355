"""`GET /metrics` on the local stack's front door: every process's metrics on one page.

With the targets in processes of their own, each serves its own registry at `/metrics` on
its internal address and the front door merges them, labelled by target; a target that
does not answer is left out of that scrape (its restart starts its counters afresh, as a
new Cloud Run instance would). In one process, that process's registry, labelled
`single-process`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import httpx
from flask import Request, Response

from common.errors import NotFound, Problem
from common.http import problem_response, require_method
from common.logging import get_logger
from common.telemetry import METRICS_PATH, prometheus_response
from hookyard.metric_families import merge_pages

log = get_logger(__name__)

SINGLE_PROCESS = "single-process"
SCRAPE_TIMEOUT_S = 10.0

Pages = Callable[[], list[tuple[str, str]]]


def metrics_handler(pages: Pages) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        try:
            require_method(request, "GET", "HEAD")
            if request.path.rstrip("/") != METRICS_PATH:
                raise NotFound("no such metrics page")
        except Problem as problem:
            return problem_response(problem, request.path)
        return prometheus_response(merge_pages(pages()))

    return handle


def process_pages(targets: Sequence[tuple[str, str]], client: httpx.Client) -> Pages:
    """Each (target, base URL)'s own page, read at scrape time."""

    def pages() -> list[tuple[str, str]]:
        found = []
        for name, url in targets:
            try:
                response = client.get(url.rstrip("/") + METRICS_PATH, timeout=SCRAPE_TIMEOUT_S)
            except httpx.HTTPError as exc:
                log.warning("metrics scrape failed", target=name, error=type(exc).__name__)
                continue
            if response.status_code == 200:
                found.append((name, response.text))
        return found

    return pages


def own_page(render: Callable[[], bytes | None]) -> Pages:
    def pages() -> list[tuple[str, str]]:
        text = render()
        return [(SINGLE_PROCESS, text.decode())] if text is not None else []

    return pages
