"""A small client for the `/admin` API, so the CLI speaks HTTP like every other operator tool.

The CLI never touches the database directly: going through the admin function means the
server authenticates, validates and audits every operator action (the `X-Hookyard-Operator`
header names the person), whether the stack runs on a laptop or on Cloud Run.

Errors come out typed: `AdminError` when the server answered with a problem, and
`AdminUnreachable` when no answer came at all. Neither ever carries the bearer token.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, TypedDict
from urllib.parse import quote

import httpx

from common.config import Settings
from common.secrets import EnvSecretStore
from hookyard.stack_url import unreachable_message

TOKEN_ENV = "HOOKYARD_ADMIN_TOKEN"  # noqa: S105 (a variable name, not a value)
OPERATOR_HEADER = "X-Hookyard-Operator"
DEFAULT_TIMEOUT_S = 10.0
MAX_PAGE = 500  # the server's largest page; longer listings follow `next_cursor`

JsonObject = dict[str, Any]
DeadLetterState = Literal["pending", "replaying", "replayed", "discarded"]


class DeadLetterFilter(TypedDict, total=False):
    """Selects dead letters by what they are, not by id. `reason` matches a substring;
    `since`/`until` are RFC 3339 instants bounding the last failure."""

    source: str
    type: str
    subscription: str
    reason: str
    since: str
    until: str


FILTER_KEYS: frozenset[str] = frozenset(DeadLetterFilter.__annotations__)


class EventSearch(TypedDict, total=False):
    """`GET /admin/events` filters beyond source and type; `path` repeats (all must hold)."""

    since: str
    until: str
    handler: str
    outcome: str
    path: list[str]
    q: str
    order: str


@dataclass(frozen=True, slots=True)
class Payload:
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Erased:
    """The payload was erased on request; the event's row (proof of processing) remains."""

    detail: str


class AdminError(Exception):
    """The admin API answered with an error; `detail` is the problem's one-line explanation."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class AdminUnreachable(Exception):
    """No HTTP answer at all (refused, timed out, bad URL); the message names the URL only."""


class NoAdminToken(Exception):
    """No token anywhere we look; the message says where to put one."""


def resolve_token(explicit: str | None, settings: Settings | None = None) -> str:
    """`--token`, else `HOOKYARD_ADMIN_TOKEN`, else the local stack's `admin-token` secret.

    The last step reads the file `hookyard dev` generates (or `HOOKYARD_SECRET_ADMIN_TOKEN`),
    so on a laptop the CLI works with no setup at all. During a rotation the secret holds
    several lines; the first is the current one.
    """
    if explicit:
        return explicit
    from_env = os.environ.get(TOKEN_ENV, "").strip()
    if from_env:
        return from_env
    settings = settings or Settings()
    values = EnvSecretStore(files_dir=settings.data_dir / "secrets").values("admin-token")
    if values:
        return values[0]
    raise NoAdminToken(
        f"no admin token: pass --token, set {TOKEN_ENV}, or run `hookyard dev` once"
        " to generate the local one"
    )


def operator_name() -> str:
    """Who the server records as the actor of every change; best effort, never fatal."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (some containers)
        name = "unknown"
    # The server refuses (400) a header that is not printable or longer than 100 characters.
    return _header_safe(name)[:100] or "unknown"


def _header_safe(value: str) -> str:
    return "".join(ch for ch in value if 0x20 <= ord(ch) < 0x7F).strip()


class AdminClient:
    """One method per admin endpoint, each returning the parsed JSON body.

    Holds one `httpx.Client` (connection reuse matters when a replay is polled 5x a second);
    use it as a context manager so the connection pool is closed.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        operator: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if _header_safe(token) != token.strip() or not token.strip():
            # Checked here because httpx's encoding error would quote part of the value.
            raise NoAdminToken("the admin token must be printable ASCII")
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={
                "Authorization": f"Bearer {token.strip()}",
                OPERATOR_HEADER: operator if operator is not None else operator_name(),
                "Accept": "application/json, application/problem+json",
            },
        )

    def __enter__(self) -> Self:
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

    # -- dead letters -------------------------------------------------------------------

    def list_dead_letters(
        self,
        where: DeadLetterFilter | None = None,
        *,
        state: DeadLetterState | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JsonObject:
        """One page: `{"items": [...], "next_cursor": str | None}`."""
        params: dict[str, Any] = {**(where or {}), "state": state, "limit": limit}
        return self._get("/admin/dead-letters", {**params, "cursor": cursor})

    def iter_dead_letters(
        self,
        where: DeadLetterFilter | None = None,
        *,
        state: DeadLetterState | None = None,
        limit: int = 100,
    ) -> Iterator[JsonObject]:
        """Up to `limit` dead letters, following `next_cursor` across pages."""

        def page(size: int, cursor: str | None) -> JsonObject:
            return self.list_dead_letters(where, state=state, limit=size, cursor=cursor)

        return _paginate(page, limit)

    def get_dead_letter(self, dead_letter_id: int) -> JsonObject:
        """The dead letter plus `data` (text) and `data_json` (parsed, or None)."""
        return self._get(f"/admin/dead-letters/{int(dead_letter_id)}")

    def replay(
        self,
        *,
        ids: Sequence[int] | None = None,
        where: DeadLetterFilter | None = None,
        reason: str,
        dry_run: bool = False,
        max_per_second: float | None = None,
    ) -> JsonObject:
        """Dry run: `{"dry_run": true, "total"}`; else `{"replay_id", "total", "state"}`."""
        body: JsonObject = {**_selection(ids, where), "reason": reason, "dry_run": dry_run}
        if max_per_second is not None:
            body["max_per_second"] = max_per_second
        return self._send("POST", "/admin/dead-letters/replay", body)

    def get_replay(self, replay_id: int) -> JsonObject:
        return self._get(f"/admin/replays/{int(replay_id)}")

    def cancel_replay(self, replay_id: int, reason: str) -> JsonObject:
        return self._send("POST", f"/admin/replays/{int(replay_id)}/cancel", {"reason": reason})

    def discard(
        self,
        *,
        ids: Sequence[int] | None = None,
        where: DeadLetterFilter | None = None,
        reason: str,
    ) -> JsonObject:
        """`{"discarded": N}`."""
        body: JsonObject = {**_selection(ids, where), "reason": reason}
        return self._send("POST", "/admin/dead-letters/discard", body)

    # -- events and stats ---------------------------------------------------------------

    def list_events(
        self,
        *,
        source: str | None = None,
        event_type: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        search: EventSearch | None = None,
    ) -> JsonObject:
        """One page; `cursor` is the last id seen (ids after it, or before it with
        `order: desc`)."""
        params = {
            **(search or {}), "source": source, "type": event_type, "limit": limit,
            "cursor": cursor,
        }  # fmt: skip
        return self._get("/admin/events", params)

    def iter_events(
        self,
        *,
        source: str | None = None,
        event_type: str | None = None,
        limit: int = 100,
        search: EventSearch | None = None,
    ) -> Iterator[JsonObject]:
        def page(size: int, cursor: str | None) -> JsonObject:
            return self.list_events(
                source=source, event_type=event_type, limit=size, cursor=cursor, search=search
            )

        return _paginate(page, limit)

    def get_event(self, source: str, event_id: str) -> JsonObject:
        """The event, its payload, every handler's outcome and the ledger `transactions`."""
        return self._get(_event_path(source, event_id))

    def erase_event(self, source: str, event_id: str, reason: str) -> JsonObject:
        """`{"erased": bool, "dead_letters_discarded": [ids]}`."""
        return self._send("POST", _event_path(source, event_id) + "/erase", {"reason": reason})

    def resend_event(
        self, source: str, event_id: str, reason: str, handlers: Sequence[str] | None = None
    ) -> JsonObject:
        """`{"published": [{"handler", "message_id"}]}`; every taking handler by default."""
        body: JsonObject = {"reason": reason}
        if handlers:
            body["handlers"] = list(handlers)
        return self._send("POST", _event_path(source, event_id) + "/resend", body)

    def event_payload(self, source: str, event_id: str) -> Payload | Erased:
        """The exact bytes the sender signed, with their media type; `Erased` once erased."""
        response = self._call("GET", _event_path(source, event_id) + "/payload", allow=(410,))
        if response.status_code == 410:
            return Erased(_problem_detail(response))
        media = response.headers.get("content-type", "application/octet-stream")
        return Payload(response.content, media)

    def stats(self) -> JsonObject:
        return self._get("/admin/stats")

    # -- replays, the audit trail, accounts ------------------------------------------------

    def iter_replays(self, *, state: str | None = None, limit: int = 100) -> Iterator[JsonObject]:
        """Newest first."""
        return self._iter("/admin/replays", {"state": state}, limit)

    def iter_audit(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 100,
    ) -> Iterator[JsonObject]:
        """Newest first; `since` inclusive, `until` exclusive."""
        params = {"action": action, "actor": actor, "since": since, "until": until}
        return self._iter("/admin/audit", params, limit)

    def iter_accounts(self, *, prefix: str | None = None, limit: int = 100) -> Iterator[JsonObject]:
        """In id order."""
        return self._iter("/admin/accounts", {"prefix": prefix}, limit)

    def get_account(self, account_id: str) -> JsonObject:
        return self._get(_account_path(account_id))

    def iter_entries(self, account_id: str, *, limit: int = 100) -> Iterator[JsonObject]:
        return self._iter(_account_path(account_id) + "/entries", {}, limit)

    def iter_notification_attempts(
        self, account_id: str, *, limit: int = 100
    ) -> Iterator[JsonObject]:
        """Newest first; URLs come masked."""
        return self._iter(_account_path(account_id) + "/notification-attempts", {}, limit)

    def _iter(self, path: str, params: Mapping[str, Any], limit: int) -> Iterator[JsonObject]:
        def page(size: int, cursor: str | None) -> JsonObject:
            return self._get(path, {**params, "limit": size, "cursor": cursor})

        return _paginate(page, limit)

    # -- plumbing -----------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> JsonObject:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        return self._request("GET", path, params=query)

    def _send(self, method: str, path: str, body: JsonObject) -> JsonObject:
        return self._request(method, path, json=body)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: JsonObject | None = None,
    ) -> JsonObject:
        response = self._call(method, path, params=params, json=json)
        try:
            body = response.json()
        except ValueError as exc:
            raise AdminError(response.status_code, "the answer is not JSON") from exc
        if not isinstance(body, dict):
            raise AdminError(response.status_code, "the answer is not a JSON object")
        return body

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: JsonObject | None = None,
        allow: tuple[int, ...] = (),
    ) -> httpx.Response:
        """The response, or `AdminUnreachable` / `AdminError` (unless its status is allowed)."""
        try:
            response = self._http.request(method, path, params=params, json=json)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise AdminUnreachable(unreachable_message(self.base_url)) from exc
        except httpx.TimeoutException as exc:
            raise AdminUnreachable(f"{self.base_url} did not answer in time") from exc
        except httpx.HTTPError as exc:
            # httpx messages name the host and the OS error, never request headers.
            raise AdminUnreachable(f"no answer from {self.base_url}: {exc}") from exc
        if response.is_error and response.status_code not in allow:
            raise AdminError(response.status_code, _problem_detail(response))
        return response


def _event_path(source: str, event_id: str) -> str:
    return f"/admin/events/{quote(source, safe='')}/{quote(event_id, safe='')}"


def _account_path(account_id: str) -> str:
    return f"/admin/accounts/{quote(account_id, safe='')}"


def _selection(ids: Sequence[int] | None, where: DeadLetterFilter | None) -> JsonObject:
    """The API takes `ids` or `filter`, never both: a silent intersection would surprise."""
    if bool(ids) == bool(where):
        raise ValueError("select dead letters by ids or by filter, exactly one of them")
    return {"ids": [int(i) for i in ids]} if ids else {"filter": dict(where or {})}


def _problem_detail(response: httpx.Response) -> str:
    """RFC 7807 `detail` (or `title`); a proxy's HTML error page becomes its status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("detail", "title"):
            if isinstance(body.get(key), str) and body[key].strip():
                return str(body[key])
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()


def _paginate(fetch: Callable[[int, str | None], JsonObject], limit: int) -> Iterator[JsonObject]:
    """Yields up to `limit` items from `fetch(page_size, cursor)` pages."""
    remaining = limit
    cursor: str | None = None
    while remaining > 0:
        page = fetch(min(remaining, MAX_PAGE), cursor)
        items = page.get("items") or []
        yield from items[:remaining]
        remaining -= len(items)
        cursor = page.get("next_cursor")
        if not cursor or not items:
            return
