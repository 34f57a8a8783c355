"""The operators' read-only lists: replays, the audit trail, accounts, and one account's
notification attempts (what the console pages through).

Each is keyset-paginated on its table's id, never by offset, so rows written while an
operator pages neither repeat nor go missing: `cursor` is the previous page's `next_cursor`.
Query strings are read strictly (bytes that are not UTF-8, NUL, a parameter given twice are
400s), since a filter that silently matched something else would mislead whoever reads it.
The account shape and id rule live here too; `admin` shows a single account with them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from flask import Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine

from common.db import accounts, audit, notification_attempts, replays
from common.db.accounts import Account
from common.db.audit import AuditEntry, AuditFilter
from common.db.notification_attempts import NotificationAttempt
from common.errors import BadRequest, NotFound
from functions.event_operations import strict_query
from functions.operations import MAX_PAGE, Text, Timestamp, int_arg, paged, parse, replay_json
from functions.url_masking import masked_url

ACCOUNT_ID = r"[A-Za-z0-9_.-]{1,128}"
MAX_CURSOR = 2**62
PAGING = frozenset({"limit", "cursor"})
REPLAY_PARAMETERS = PAGING | {"state"}
AUDIT_PARAMETERS = PAGING | {"action", "actor", "since", "until"}
ACCOUNT_PARAMETERS = PAGING | {"prefix"}
ATTEMPT_PARAMETERS = PAGING


class ReplaysIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["running", "done", "cancelled"] | None = None


class AuditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Text | None = Field(default=None, min_length=1, max_length=256)
    actor: Text | None = Field(default=None, min_length=1, max_length=256)
    since: Timestamp | None = None
    until: Timestamp | None = None


class AccountsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prefix: str | None = Field(default=None, pattern=f"^{ACCOUNT_ID}$")
    cursor: str | None = Field(default=None, pattern=f"^{ACCOUNT_ID}$")


@dataclass
class Listings:
    engine_factory: Callable[[], Engine]

    def replays(self, request: Request) -> Response:
        args = query_args(request)
        limit, cursor = page_bounds(args)
        given = parse(ReplaysIn, args)
        with self.engine_factory().connect() as conn:
            rows = replays.list_page(conn, state=given.state, before_id=cursor, limit=limit + 1)
        return paged(rows, limit, replay_json)

    def audit(self, request: Request) -> Response:
        args = query_args(request)
        limit, cursor = page_bounds(args)
        given = parse(AuditIn, args)
        selection = AuditFilter(before_id=cursor, **given.model_dump())
        with self.engine_factory().connect() as conn:
            rows = audit.list_page(conn, selection, limit + 1)
        return paged(rows, limit, audit_entry_json)

    def accounts(self, request: Request) -> Response:
        args = query_args(request)
        limit = int_arg(args.pop("limit", None), "limit", 1, MAX_PAGE) or 100
        given = parse(AccountsIn, args)
        with self.engine_factory().connect() as conn:
            rows = accounts.list_page(
                conn, prefix=given.prefix, after_id=given.cursor, limit=limit + 1
            )
        return paged(rows, limit, account_json)

    def notification_attempts(self, account_id: str, request: Request) -> Response:
        check_account_id(account_id)
        args = query_args(request)
        limit, cursor = page_bounds(args)
        with self.engine_factory().connect() as conn:
            if accounts.get(conn, account_id) is None:
                raise NotFound(f"no account {account_id!r}")
            rows = notification_attempts.for_account(
                conn, account_id, before_id=cursor, limit=limit + 1
            )
        return paged(rows, limit, notification_attempt_json)


def query_args(request: Request) -> dict[str, str]:
    """The query string by name; the router has already refused names it does not know."""
    values: dict[str, str] = {}
    for name, value in strict_query(request):
        if name in values:
            raise BadRequest(f"{name} given more than once", field=name)
        values[name] = value
    return values


def page_bounds(args: dict[str, str]) -> tuple[int, int | None]:
    """(limit, cursor) taken out of `args`, for lists keyed on a numeric id."""
    limit = int_arg(args.pop("limit", None), "limit", 1, MAX_PAGE) or 100
    cursor = int_arg(args.pop("cursor", None), "cursor", 0, MAX_CURSOR)
    return limit, cursor


def check_account_id(account_id: str) -> None:
    if not re.fullmatch(ACCOUNT_ID, account_id):
        raise BadRequest("account id must be 1-128 characters of A-Z a-z 0-9 _ . -")


def account_json(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "currency": account.currency,
        "notify_url": masked_url(account.notify_url) if account.notify_url else None,
        "available": account.available,
        "held": account.held,
    }


def audit_entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "reason": entry.reason,
        "params": entry.params,
        "result": entry.result,
    }


def notification_attempt_json(attempt: NotificationAttempt) -> dict[str, Any]:
    return {
        "id": attempt.id,
        "outbox_id": attempt.outbox_id,
        "kind": attempt.kind,
        "outbox_state": attempt.outbox_state,
        "attempted_at": attempt.attempted_at.isoformat(),
        "url": masked_url(attempt.url),
        "status": attempt.status,
        "error": attempt.error,
        "duration_ms": attempt.duration_ms,
    }
