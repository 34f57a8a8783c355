"""The admin API as `hookyard listen` reads it: pages of the event log and stored payloads.

Errors come out as `admin_client`'s types (`AdminError` with the status, `AdminUnreachable`
when nothing answered) so the CLI reports them the way every other command does;
`is_transient` says which of them a long-running loop should wait out.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from hookyard.admin_client import (
    DEFAULT_TIMEOUT_S,
    OPERATOR_HEADER,
    AdminError,
    AdminUnreachable,
    operator_name,
)
from hookyard.stack_url import unreachable_message

JsonObject = dict[str, Any]
RETRY_STATUSES = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class Page:
    items: list[JsonObject]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Payload:
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Erased:
    """The payload was erased on request; the event's row (proof of processing) remains."""

    detail: str


def is_transient(exc: Exception) -> bool:
    """Worth retrying: no answer, or the server said "not now" (5xx, 408, 429). A 401 or
    400 will not get better by waiting."""
    if isinstance(exc, AdminUnreachable):
        return True
    return isinstance(exc, AdminError) and (exc.status >= 500 or exc.status in RETRY_STATUSES)


class EventFeed:
    """One HTTP client (connection reuse across polls), closed by the context manager."""

    def __init__(
        self, base_url: str, token: str, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=DEFAULT_TIMEOUT_S,
            transport=transport,
            headers={
                "Authorization": f"Bearer {token.strip()}",
                OPERATOR_HEADER: operator_name(),
                "Accept": "application/json, application/problem+json",
            },
        )

    def __enter__(self) -> EventFeed:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def page(
        self,
        *,
        source: str | None,
        event_type: str | None,
        cursor: str | None,
        limit: int,
        newest_first: bool = False,
    ) -> Page:
        """`cursor` means "ids after this one" (ascending); `newest_first` asks `order=desc`,
        which a server without it refuses with a 400."""
        params = {"source": source, "type": event_type, "cursor": cursor, "limit": limit}
        if newest_first:
            params["order"] = "desc"
        query = {k: v for k, v in params.items() if v is not None}
        body = self._json(self._get("/admin/events", query))
        items = body.get("items")
        cursor_out = body.get("next_cursor")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise AdminError(200, "the event list has no items")
        return Page(items, str(cursor_out) if cursor_out is not None else None)

    def event(self, source: str, event_id: str) -> JsonObject:
        return self._json(self._get(_event_path(source, event_id)))

    def payload(self, source: str, event_id: str) -> Payload | Erased:
        response = self._get(f"{_event_path(source, event_id)}/payload", allow_gone=True)
        if response.status_code == 410:
            return Erased(problem_detail(response))
        media = response.headers.get("content-type", "application/octet-stream")
        return Payload(response.content, media)

    def _get(
        self, path: str, params: dict[str, Any] | None = None, *, allow_gone: bool = False
    ) -> httpx.Response:
        try:
            response = self._http.get(path, params=params)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise AdminUnreachable(unreachable_message(self.base_url)) from exc
        except httpx.TimeoutException as exc:
            raise AdminUnreachable(f"{self.base_url} did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise AdminUnreachable(f"no answer from {self.base_url}: {exc}") from exc
        if response.is_error and not (allow_gone and response.status_code == 410):
            raise AdminError(response.status_code, problem_detail(response))
        return response

    @staticmethod
    def _json(response: httpx.Response) -> JsonObject:
        try:
            body = response.json()
        except ValueError as exc:
            raise AdminError(response.status_code, "the answer is not JSON") from exc
        if not isinstance(body, dict):
            raise AdminError(response.status_code, "the answer is not a JSON object")
        return body


def _event_path(source: str, event_id: str) -> str:
    return f"/admin/events/{quote(source, safe='')}/{quote(event_id, safe='')}"


def problem_detail(response: httpx.Response) -> str:
    """RFC 7807 `detail` (or `title`); anything else becomes its status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("detail", "title"):
            if isinstance(body.get(key), str) and body[key].strip():
                return str(body[key])
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()
