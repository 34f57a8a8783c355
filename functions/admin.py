"""`/admin/...`: the operators' API. Bearer token = the `admin-token` secret (any of its lines).

Reads go through the repositories in `common/`; this function never imports workers.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from flask import Request, Response
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError
from sqlalchemy.engine import Engine

from common.db import accounts, dead_letters, ledger, outbox
from common.db.accounts import Account
from common.db.dead_letters import DeadLetter
from common.db.engine import get_engine
from common.db.ledger import Entry
from common.errors import BadRequest, Conflict, NotFound, Problem, Unauthorized
from common.http import json_response, path_parts, problem_response, require_method
from common.logging import bind_context, get_logger
from common.secrets import SecretStore, get_secret_store
from common.tracing import parse_trace

log = get_logger(__name__)

PREFIX = "/admin"
ACCOUNT_ID = r"[A-Za-z0-9_.-]{1,128}"
MAX_PAGE = 500
SOURCE_NAME = r"[a-z][a-z0-9-]{0,62}"
QUERY_PARAMETERS = {
    "dead-letters": frozenset({"source", "state", "limit", "cursor"}),
    "accounts/*/entries": frozenset({"limit", "cursor"}),
}
DEAD_LETTER_STATES = frozenset({"pending", "replaying", "replayed", "discarded"})


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    currency: str = Field(pattern=r"^[A-Za-z]{3}$")
    notify_url: HttpUrl | None = None


@dataclass
class Admin:
    engine_factory: Callable[[], Engine]
    secrets: SecretStore
    project: str = "local-project"

    def handle(self, request: Request) -> Response:
        bind_context(parse_trace(request.headers), self.project, route=request.path)
        try:
            self._authenticate(request)
            return self._route(request, path_parts(request, PREFIX))
        except Problem as problem:
            return problem_response(problem, request.path)

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        tokens = self.secrets.values("admin-token")
        if not tokens:
            raise Unauthorized("the admin API is disabled: no admin token is configured")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing bearer token")
        # Compare against every configured token so timing says nothing about which matched.
        matched = False
        for candidate in tokens:
            matched |= hmac.compare_digest(token.encode(), candidate.encode())
        if not matched:
            raise Unauthorized("invalid bearer token")

    def _route(self, request: Request, parts: list[str]) -> Response:
        allowed = QUERY_PARAMETERS.get(_route_key(parts), frozenset())
        unknown = sorted(set(request.args) - allowed)
        if unknown:
            # Strict on purpose: `?sorce=stripe` must not silently list everything.
            raise BadRequest(f"unknown query parameter {unknown[0]!r}", field=unknown[0])
        match parts:
            case ["accounts", account_id, "entries"]:
                require_method(request, "GET")
                return self._list_entries(account_id, request)
            case ["accounts", account_id]:
                require_method(request, "GET", "PUT")
                if request.method == "PUT":
                    return self._put_account(account_id, request)
                return self._get_account(account_id)
            case ["dead-letters"]:
                require_method(request, "GET")
                return self._list_dead_letters(request)
            case ["dead-letters", raw_id]:
                require_method(request, "GET")
                return self._get_dead_letter(raw_id)
        raise NotFound("no such admin resource")

    def _put_account(self, account_id: str, request: Request) -> Response:
        _check_account_id(account_id)
        try:
            body = AccountIn.model_validate_json(request.get_data())
        except ValidationError as exc:
            raise BadRequest(_validation_detail(exc)) from exc
        currency = body.currency.lower()
        notify_url = str(body.notify_url) if body.notify_url else None
        with self.engine_factory().begin() as conn:
            created = accounts.create(conn, account_id, currency, notify_url)
            if created is not None:
                log.info("account created", account_id=account_id)
                return json_response(account_json(created), status=201)
            current = accounts.lock(conn, account_id)
            assert current is not None
            if current.currency != currency and accounts.has_entries(conn, account_id):
                raise Conflict("the currency of an account with ledger entries cannot change")
            updated = accounts.update(conn, account_id, currency, notify_url)
        log.info("account updated", account_id=account_id)
        return json_response(account_json(updated))

    def _get_account(self, account_id: str) -> Response:
        _check_account_id(account_id)
        with self.engine_factory().connect() as conn:
            account = accounts.get(conn, account_id)
            pending = outbox.pending_for(conn, account_id) if account else 0
        if account is None:
            raise NotFound(f"no account {account_id!r}")
        return json_response({**account_json(account), "pending_notifications": pending})

    def _list_entries(self, account_id: str, request: Request) -> Response:
        _check_account_id(account_id)
        limit = _int_arg(request.args.get("limit"), "limit", low=1, high=MAX_PAGE) or 100
        cursor = _int_arg(request.args.get("cursor"), "cursor", low=0, high=2**62) or 0
        with self.engine_factory().connect() as conn:
            if accounts.get(conn, account_id) is None:
                raise NotFound(f"no account {account_id!r}")
            rows = ledger.entries(conn, account_id, after_id=cursor, limit=limit + 1)
        page = rows[:limit]
        return json_response(
            {
                "items": [entry_json(e) for e in page],
                "next_cursor": str(page[-1].id) if len(rows) > limit else None,
            }
        )

    def _list_dead_letters(self, request: Request) -> Response:
        args = request.args
        limit = _int_arg(args.get("limit"), "limit", low=1, high=MAX_PAGE) or 100
        cursor = _int_arg(args.get("cursor"), "cursor", low=0, high=2**62)
        source = _choice_arg(args.get("source"), "source", pattern=SOURCE_NAME)
        state = _choice_arg(args.get("state"), "state", allowed=DEAD_LETTER_STATES)
        with self.engine_factory().connect() as conn:
            rows = dead_letters.list_page(
                conn,
                source=source,
                state=state,
                after_id=cursor,
                limit=limit + 1,
            )
        page = rows[:limit]
        next_cursor = str(page[-1].id) if len(rows) > limit else None
        return json_response(
            {"items": [dead_letter_json(d) for d in page], "next_cursor": next_cursor}
        )

    def _get_dead_letter(self, raw_id: str) -> Response:
        dead_letter_id = _int_arg(raw_id, "id", low=1, high=2**62) or 0
        with self.engine_factory().connect() as conn:
            row = dead_letters.get(conn, dead_letter_id)
        if row is None:
            raise NotFound(f"no dead letter {dead_letter_id}")
        body = dead_letter_json(row)
        body["data"] = row.data.decode("utf-8", errors="replace")
        return json_response(body)


def account_json(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "currency": account.currency,
        "notify_url": account.notify_url,
        "available": account.available,
        "held": account.held,
    }


def entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "transaction_id": entry.transaction_id,
        "balance": entry.ledger_account.rsplit(":", 1)[-1],
        "amount": entry.amount,
        "currency": entry.currency,
        "kind": entry.kind,
        "source": entry.source,
        "event_id": entry.event_id,
        "created_at": entry.created_at.isoformat(),
    }


def _route_key(parts: list[str]) -> str:
    if len(parts) == 3 and parts[0] == "accounts" and parts[2] == "entries":
        return "accounts/*/entries"
    return "/".join(parts)


def dead_letter_json(row: DeadLetter) -> dict[str, Any]:
    return {
        "id": row.id,
        "origin": row.origin,
        "subscription": row.subscription,
        "message_id": row.message_id,
        "source": row.source,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "delivery_count": row.delivery_count,
        "error_class": row.error_class,
        "reason": row.error_message,
        "state": row.state,
        "attributes": row.attributes,
        "first_failed_at": row.first_failed_at.isoformat(),
        "last_failed_at": row.last_failed_at.isoformat(),
    }


def _check_account_id(account_id: str) -> None:
    if not re.fullmatch(ACCOUNT_ID, account_id):
        raise BadRequest("account id must be 1-128 characters of A-Z a-z 0-9 _ . -")


def _int_arg(raw: str | None, name: str, *, low: int, high: int) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}")
    return int(raw)


def _choice_arg(
    raw: str | None,
    name: str,
    *,
    pattern: str | None = None,
    allowed: frozenset[str] | None = None,
) -> str | None:
    if raw is None:
        return None
    if allowed is not None and raw not in allowed:
        raise BadRequest(f"{name} must be one of {', '.join(sorted(allowed))}", field=name)
    if pattern is not None and not re.fullmatch(pattern, raw):
        raise BadRequest(f"{name} is not a valid name", field=name)
    return raw


def _validation_detail(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


@lru_cache(maxsize=1)
def default_admin() -> Admin:
    from common.config import get_settings

    return Admin(get_engine, get_secret_store(), get_settings().gcp_project)


def handle(request: Request) -> Response:
    return default_admin().handle(request)
