"""The admin API as `hookyard listen` reads it: typed pages of the event log.

Errors come out as `admin_client`'s types (`AdminError` with the status, `AdminUnreachable`
when nothing answered) so the CLI reports them the way every other command does;
`is_transient` says which of them a long-running loop should wait out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hookyard.admin_client import AdminClient, AdminError, AdminUnreachable, Erased, Payload

__all__ = ["Erased", "EventFeed", "Page", "Payload", "is_transient"]

JsonObject = dict[str, Any]
RETRY_STATUSES = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class Page:
    items: list[JsonObject]
    next_cursor: str | None


def is_transient(exc: Exception) -> bool:
    """Worth retrying: no answer, or the server said "not now" (5xx, 408, 429). A 401 or
    400 will not get better by waiting."""
    if isinstance(exc, AdminUnreachable):
        return True
    return isinstance(exc, AdminError) and (exc.status >= 500 or exc.status in RETRY_STATUSES)


class EventFeed(AdminClient):
    """One HTTP client (connection reuse across polls), closed by the context manager."""

    def page(
        self,
        *,
        source: str | None,
        event_type: str | None,
        cursor: str | None,
        limit: int,
        newest_first: bool = False,
    ) -> Page:
        """`cursor` means "ids after this one", or before it `newest_first`."""
        body = self.list_events(
            source=source, event_type=event_type, limit=limit, cursor=cursor,
            search={"order": "desc"} if newest_first else None,
        )  # fmt: skip
        items = body.get("items")
        cursor_out = body.get("next_cursor")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise AdminError(200, "the event list has no items")
        return Page(items, str(cursor_out) if cursor_out is not None else None)

    def event(self, source: str, event_id: str) -> JsonObject:
        return self.get_event(source, event_id)

    def payload(self, source: str, event_id: str) -> Payload | Erased:
        return self.event_payload(source, event_id)
