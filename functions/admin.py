"""`/admin/...`: the operators' API. Bearer token = the `admin-token` secret (any of its lines),
or an allowed operator's Google ID token (`common.operator_identity`). `/console`, the pages
that call this API, is served here too, before authentication: the pages hold no data.

Reads go through the repositories in `common/`; this function never imports workers.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Request, Response
from pydantic import BaseModel, ConfigDict, Field, HttpUrl
from sqlalchemy.engine import Engine

from common.db import accounts, ledger, outbox
from common.db.ledger import Entry
from common.egress import DestinationRefused, DestinationUnresolved, EgressPolicy, resolve
from common.errors import (
    BadRequest,
    Conflict,
    NotFound,
    Problem,
    SecretUnavailable,
    ServiceUnavailable,
    Unauthorized,
)
from common.http import (
    json_response,
    path_parts,
    problem_response,
    reject_cross_site,
    require_json_body,
    require_method,
)
from common.logging import bind_context, get_logger
from common.oidc import CallerVerifier
from common.operator_identity import NoOperators, is_jwt
from common.secrets import SecretStore, values_or_unavailable
from common.tracing import parse_trace
from functions.console import is_console_path, serve_console
from functions.event_operations import SEARCH_PARAMETERS
from functions.listings import (
    ACCOUNT_PARAMETERS,
    ATTEMPT_PARAMETERS,
    AUDIT_PARAMETERS,
    REPLAY_PARAMETERS,
    Listings,
    account_json,
    check_account_id,
)
from functions.operations import Caller, Operations, int_arg, paged, parse_json
from functions.url_masking import is_masked

log = get_logger(__name__)

PREFIX = "/admin"
MAX_PAGE = 500
QUERY_PARAMETERS = {
    "dead-letters": frozenset(
        {"source", "type", "subscription", "reason", "state", "since", "until", "limit", "cursor"}
    ),
    "accounts/*/entries": frozenset({"limit", "cursor"}),
    "accounts/*/notification-attempts": ATTEMPT_PARAMETERS,
    "accounts": ACCOUNT_PARAMETERS,
    "replays": REPLAY_PARAMETERS,
    "audit": AUDIT_PARAMETERS,
    "events": SEARCH_PARAMETERS,
}


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    currency: str = Field(pattern=r"^[A-Za-z]{3}$")
    notify_url: HttpUrl | None = None


@dataclass
class Admin:
    engine_factory: Callable[[], Engine]
    secrets: SecretStore
    project: str = "local-project"
    operations: Operations | None = None
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    operators: CallerVerifier = field(
        default_factory=lambda: NoOperators("ID tokens are not accepted here")
    )
    listings: Listings = field(init=False)

    def __post_init__(self) -> None:
        if self.operations is None:
            self.operations = Operations(self.engine_factory)
        self.listings = Listings(self.engine_factory)

    def handle(self, request: Request) -> Response:
        bind_context(parse_trace(request.headers), self.project, route=request.path)
        if is_console_path(request.path):
            return serve_console(request)  # pages without data; they call this API
        try:
            reject_cross_site(request)
            caller = self._authenticate(request)
            require_json_body(request)
            return self._route(request, path_parts(request, PREFIX), caller)
        except Problem as problem:
            return problem_response(problem, request.path)
        except SecretUnavailable as exc:  # the database password, read when connecting
            log.error("secret store unavailable", error=str(exc))
            unavailable = ServiceUnavailable("a secret could not be read; retry later")
            return problem_response(unavailable, request.path)

    def _authenticate(self, request: Request) -> Caller:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and is_jwt(token.strip()):
            # Never compared with the admin token: an ID token is the operator's or nothing.
            operator = self.operators.verify(request)
            return Caller.operator(operator.email, token.strip())
        tokens = values_or_unavailable(self.secrets, "admin-token")
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
        return Caller.of(request, token)

    def _route(self, request: Request, parts: list[str], caller: Caller) -> Response:
        ops = self.operations
        assert ops is not None
        allowed = QUERY_PARAMETERS.get(_route_key(parts), frozenset())
        unknown = sorted(set(request.args) - allowed)
        if unknown:
            # Strict on purpose: `?sorce=stripe` must not silently list everything.
            raise BadRequest(f"unknown query parameter {unknown[0]!r}", field=unknown[0])
        match parts:
            case ["accounts"]:
                require_method(request, "GET")
                return self.listings.accounts(request)
            case ["accounts", account_id, "notification-attempts"]:
                require_method(request, "GET")
                return self.listings.notification_attempts(account_id, request)
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
                return ops.list_dead_letters(request)
            case ["dead-letters", "replay"]:
                require_method(request, "POST")
                return ops.replay(request, caller)
            case ["dead-letters", "discard"]:
                require_method(request, "POST")
                return ops.discard(request, caller)
            case ["dead-letters", raw_id]:
                require_method(request, "GET")
                return ops.get_dead_letter(raw_id)
            case ["replays"]:
                require_method(request, "GET")
                return self.listings.replays(request)
            case ["replays", raw_id]:
                require_method(request, "GET")
                return ops.get_replay(raw_id)
            case ["replays", raw_id, "cancel"]:
                require_method(request, "POST")
                return ops.cancel_replay(raw_id, request, caller)
            case ["events"]:
                require_method(request, "GET")
                return ops.events.search(request)
            case ["events", source, event_id]:
                require_method(request, "GET")
                return ops.events.show(source, event_id)
            case ["events", source, event_id, "erase"]:
                require_method(request, "POST")
                return ops.events.erase(source, event_id, request, caller)
            case ["events", source, event_id, "resend"]:
                require_method(request, "POST")
                return ops.events.resend(source, event_id, request, caller)
            case ["events", source, event_id, "payload"]:
                require_method(request, "GET")
                return ops.get_payload(source, event_id)
            case ["audit"]:
                require_method(request, "GET")
                return self.listings.audit(request)
            case ["stats"]:
                require_method(request, "GET")
                return ops.stats()
        raise NotFound("no such admin resource")

    def _put_account(self, account_id: str, request: Request) -> Response:
        check_account_id(account_id)
        body = parse_json(AccountIn, request)
        currency = body.currency.lower()
        notify_url = str(body.notify_url) if body.notify_url else None
        if notify_url is not None:
            if is_masked(notify_url):
                raise BadRequest(
                    "notify_url is masked, as the API shows it; send the receiver's full URL",
                    field="notify_url",
                )
            self._check_notify_url(notify_url)
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

    def _check_notify_url(self, url: str) -> None:
        """Refuse now what delivery would refuse, so the operator hears it at once.

        Delivery checks again (DNS can change after this call); a name that does not resolve
        yet is accepted for that reason: refusing it would only make this call depend on DNS.
        """
        try:
            resolve(self.egress, self.egress.destination(url))
        except DestinationRefused as exc:
            raise BadRequest(f"notify_url {exc.reason}", field="notify_url") from exc
        except DestinationUnresolved:
            log.info("notify_url does not resolve yet; delivery will check it")

    def _get_account(self, account_id: str) -> Response:
        check_account_id(account_id)
        with self.engine_factory().connect() as conn:
            account = accounts.get(conn, account_id)
            pending = outbox.pending_for(conn, account_id) if account else 0
        if account is None:
            raise NotFound(f"no account {account_id!r}")
        return json_response({**account_json(account), "pending_notifications": pending})

    def _list_entries(self, account_id: str, request: Request) -> Response:
        check_account_id(account_id)
        limit = int_arg(request.args.get("limit"), "limit", 1, MAX_PAGE) or 100
        cursor = int_arg(request.args.get("cursor"), "cursor", 0, 2**62) or 0
        with self.engine_factory().connect() as conn:
            if accounts.get(conn, account_id) is None:
                raise NotFound(f"no account {account_id!r}")
            rows = ledger.entries(conn, account_id, after_id=cursor, limit=limit + 1)
        return paged(rows, limit, entry_json)


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
    if len(parts) == 3 and parts[0] == "accounts":
        return f"accounts/*/{parts[2]}"
    return "/".join(parts)
