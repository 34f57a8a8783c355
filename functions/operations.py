"""Dead-letter operations, replays, events and stats: the operators' 3 a.m. toolkit.

Every mutating call needs a reason and writes an `operator_actions` row in the same
transaction as its effect, so the audit trail can never disagree with what happened.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

from flask import Request, Response
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from sqlalchemy.engine import Connection, Engine

from common import bounded_json
from common.db import audit, dead_letters, events, reconciliations, replays
from common.db.dead_letters import DeadLetter, Selection
from common.db.replays import Replay
from common.errors import BadRequest, Gone, NotFound, PublishError, ServiceUnavailable
from common.http import json_response, read_body, secure
from common.logging import get_logger
from common.messaging.tasks import TaskQueue
from common.replay_tasks import batch_task
from common.storable import datetime_problem, parse_bounded_int, text_problem

if TYPE_CHECKING:
    from common.messaging.publisher import Publisher
    from common.topology import Topology
    from functions.event_operations import EventOperations

log = get_logger(__name__)

MAX_PAGE = 500
MAX_ADMIN_BODY_BYTES = 1024 * 1024
MIN_YEAR, MAX_YEAR = 2, 9998
NAME = r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,127}$"
StatsProvider = Callable[[], dict[str, Any]]


def _storable(value: str) -> str:
    """PostgreSQL text holds neither NUL nor lone surrogates: refuse them as 400, not 500."""
    if (reason := text_problem(value)) is not None:
        raise ValueError(f"must be storable text: it {reason}")
    return value


def _storable_time(value: datetime) -> datetime:
    """An offset can carry year 1 or 9999 outside what an instant can be: 400, not 500.

    The bound is on the year as written (the `Instant` schema in openapi.yaml says the same),
    since no offset under a day moves a year from 2 to 9998 out of range.
    """
    if not MIN_YEAR <= value.year <= MAX_YEAR or datetime_problem(value) is not None:
        raise ValueError(f"must fall in the years {MIN_YEAR:04d} to {MAX_YEAR}")
    return value


def _json_integer(value: Any) -> Any:
    """What JSON Schema calls an integer: 7 or 7.0, never true or "7"."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value


def _rfc3339(value: Any) -> Any:
    """RFC 3339 with an offset, as `format: date-time` means; not a bare date or a number."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with a UTC offset")
    return value


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
Text = Annotated[str, AfterValidator(_storable)]
DeadLetterId = Annotated[int, BeforeValidator(_json_integer), Field(ge=1, le=2**62)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_storable_time)]


class FilterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str | None = Field(default=None, pattern=NAME)
    type: Text | None = Field(default=None, max_length=256)
    subscription: str | None = Field(default=None, pattern=NAME)
    reason: Text | None = Field(default=None, min_length=1, max_length=500)
    since: Timestamp | None = None
    until: Timestamp | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        """Leave a field out to not filter on it; an explicit null is a mistake."""
        if isinstance(data, dict):
            for key, value in data.items():
                if value is None:
                    raise ValueError(f"{key} must not be null")
        return data


class EventKeyIn(BaseModel):
    source: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    event_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,256}$")


class _Selected(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[DeadLetterId] | None = Field(default=None, min_length=1, max_length=10_000)
    filter: FilterIn | None = None
    reason: Text = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _one_selector(self) -> _Selected:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give exactly one of ids or filter")
        if self.filter is not None and not self.filter.model_dump(exclude_none=True):
            # An empty filter would select every pending dead letter: too easy by accident.
            raise ValueError("filter needs at least one field")
        return self

    def selection(self) -> Selection:
        if self.ids is not None:
            return Selection(ids=tuple(self.ids), state="pending")
        assert self.filter is not None
        return Selection(state="pending", **self.filter.model_dump())


class ReplayIn(_Selected):
    dry_run: bool = Field(default=False, strict=True)
    max_per_second: float = Field(default=100, ge=1, le=1000, strict=True)


class DiscardIn(_Selected):
    pass


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(min_length=1, max_length=500)


@dataclass(frozen=True)
class Caller:
    actor: str
    fingerprint: str

    @classmethod
    def of(cls, request: Request, token: str) -> Caller:
        claimed = request.headers.get("X-Hookyard-Operator")
        if claimed is not None and not (claimed.isprintable() and len(claimed) <= 100):
            raise BadRequest(
                "X-Hookyard-Operator must be printable and at most 100 characters",
                field="X-Hookyard-Operator",
            )
        actor = (claimed or "").strip() or "unknown"
        return cls(actor, hashlib.sha256(token.encode()).hexdigest()[:12])

    @classmethod
    def operator(cls, email: str, token: str) -> Caller:
        """The verified email is the actor; an `X-Hookyard-Operator` claim cannot change it."""
        return cls(email, hashlib.sha256(token.encode()).hexdigest()[:12])

    def audit(
        self,
        conn: Connection,
        action: str,
        reason: str,
        params: dict[str, Any],
        result: dict[str, Any],
    ) -> None:
        """In the caller's transaction: the action and its record commit together."""
        audit.record(
            conn, actor=self.actor, fingerprint=self.fingerprint,
            action=action, reason=reason, params=params, result=result,
        )  # fmt: skip


@dataclass
class Operations:
    engine_factory: Callable[[], Engine]
    tasks_factory: Callable[[], TaskQueue] | None = None
    stats_provider: StatsProvider | None = None
    publisher_factory: Callable[[], Publisher] | None = None
    topology: Topology | None = None

    @cached_property
    def events(self) -> EventOperations:
        """Search, show, erase and resend (`functions.event_operations`)."""
        from functions.event_operations import EventOperations

        if self.topology is None:
            return EventOperations(self.engine_factory, self.publisher_factory)
        return EventOperations(self.engine_factory, self.publisher_factory, self.topology)

    # -- dead letters ------------------------------------------------------------------
    def list_dead_letters(self, request: Request) -> Response:
        args = request.args
        limit = int_arg(args.get("limit"), "limit", 1, MAX_PAGE) or 100
        filters = parse(FilterIn, {k: args[k] for k in FilterIn.model_fields if k in args})
        state = args.get("state")
        if state is not None and state not in {"pending", "replaying", "replayed", "discarded"}:
            raise BadRequest(
                "state must be pending, replaying, replayed or discarded", field="state"
            )
        selection = Selection(
            state=state, after_id=int_arg(args.get("cursor"), "cursor", 0, 2**62),
            **filters.model_dump(),
        )  # fmt: skip
        with self.engine_factory().connect() as conn:
            rows = dead_letters.list_page(conn, selection, limit + 1)
        return paged(rows, limit, dead_letter_json)

    def get_dead_letter(self, raw_id: str) -> Response:
        dead_letter_id = int_arg(raw_id, "id", 1, 2**62) or 0
        with self.engine_factory().connect() as conn:
            row = dead_letters.get(conn, dead_letter_id)
        if row is None:
            raise NotFound(f"no dead letter {dead_letter_id}")
        body = dead_letter_json(row)
        body["data"] = row.data.decode("utf-8", errors="replace")
        try:
            body["data_json"] = bounded_json.loads(row.data)
        except (ValueError, UnicodeDecodeError):
            body["data_json"] = None
        return json_response(body)

    def replay(self, request: Request, caller: Caller) -> Response:
        body = parse_json(ReplayIn, request)
        selection = body.selection()
        params = body.model_dump(mode="json", exclude={"reason"})
        engine = self.engine_factory()
        if body.dry_run:
            with engine.begin() as conn:
                _refuse_unknown_ids(conn, selection)
                total = dead_letters.count(conn, selection)
                caller.audit(conn, "replay.dry-run", body.reason, params, {"total": total})
            return json_response({"dry_run": True, "total": total})
        if self.tasks_factory is None:
            raise ServiceUnavailable("replays need a task queue, and none is configured")
        with engine.begin() as conn:
            _refuse_unknown_ids(conn, selection)
            replay_id = replays.create(
                conn, max_per_second=body.max_per_second, reason=body.reason,
                actor=caller.actor, selection=params,
            )  # fmt: skip
            total = dead_letters.claim_for_replay(conn, selection, replay_id)
            replays.set_total(conn, replay_id, total)
            caller.audit(conn, "replay.start", body.reason, params,
                         {"replay_id": replay_id, "total": total})  # fmt: skip
        if total:
            self._start(replay_id, caller)
        log.info("replay started", replay_id=replay_id, total=total, actor=caller.actor)
        return json_response(
            {"replay_id": replay_id, "total": total, "state": "running" if total else "done"},
            status=202,
        )

    def _start(self, replay_id: int, caller: Caller) -> None:
        assert self.tasks_factory is not None
        try:
            self.tasks_factory().enqueue(batch_task(replay_id, 0))
        except PublishError as exc:
            with self.engine_factory().begin() as conn:
                replays.finish(conn, replay_id, "cancelled")
                dead_letters.release_replay(conn, replay_id)
                caller.audit(conn, "replay.abort", "task queue unavailable",
                             {"replay_id": replay_id}, {})  # fmt: skip
            raise ServiceUnavailable("could not start the replay; nothing was changed") from exc

    def get_replay(self, raw_id: str) -> Response:
        replay_id = int_arg(raw_id, "id", 1, 2**62) or 0
        with self.engine_factory().connect() as conn:
            replay = replays.get(conn, replay_id)
        if replay is None:
            raise NotFound(f"no replay {replay_id}")
        return json_response(replay_json(replay))

    def cancel_replay(self, raw_id: str, request: Request, caller: Caller) -> Response:
        replay_id = int_arg(raw_id, "id", 1, 2**62) or 0
        body = parse_json(CancelIn, request)
        with self.engine_factory().begin() as conn:
            replay = replays.get(conn, replay_id, lock=True)
            if replay is None:
                raise NotFound(f"no replay {replay_id}")
            released = 0
            if replay.state == "running":
                replays.finish(conn, replay_id, "cancelled")
                released = dead_letters.release_replay(conn, replay_id)
            caller.audit(conn, "replay.cancel", body.reason, {"replay_id": replay_id},
                         {"released": released})  # fmt: skip
            replay = replays.get(conn, replay_id)
        assert replay is not None
        return json_response(replay_json(replay))

    def discard(self, request: Request, caller: Caller) -> Response:
        body = parse_json(DiscardIn, request)
        params = body.model_dump(mode="json", exclude={"reason"})
        with self.engine_factory().begin() as conn:
            _refuse_unknown_ids(conn, body.selection())
            count = dead_letters.discard(conn, body.selection())
            caller.audit(conn, "discard", body.reason, params, {"discarded": count})
        return json_response({"discarded": count})

    # -- events and stats --------------------------------------------------------------
    def get_payload(self, source: str, event_id: str) -> Response:
        """The exact bytes the sender signed, with their media type: what `hookyard listen`
        and `events resend --to` forward, and what an operator diffs."""
        parse(EventKeyIn, {"source": source, "event_id": event_id})
        with self.engine_factory().connect() as conn:
            stored = events.payload(conn, source, event_id)
        if stored is None:
            raise NotFound(f"no event {source}/{event_id}")
        if stored.body is None:
            raise Gone(
                f"the payload of {source}/{event_id} was erased ({stored.erase_reason})",
                erased_at=stored.erased_at.isoformat() if stored.erased_at else None,
            )
        media = stored.content_type if stored.content_type in PAYLOAD_MEDIA else OCTETS
        return secure(Response(stored.body, status=200, mimetype=media))

    def stats(self) -> Response:
        with self.engine_factory().connect() as conn:
            dead = dead_letters.stats(conn)
            reconciliation = reconciliations.last_reconciliation(conn)
        backlog = self.stats_provider() if self.stats_provider else {}
        return json_response(
            {"subscriptions": backlog.get("subscriptions", {}),
             "queues": backlog.get("queues", {}), "dead_letters": dead,
             "last_reconciliation": reconciliation}
        )  # fmt: skip


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
        "failure_count": row.failure_count,
        "error_class": row.error_class,
        "reason": row.error_message,
        "state": row.state,
        "attributes": row.attributes,
        "first_failed_at": row.first_failed_at.isoformat(),
        "last_failed_at": row.last_failed_at.isoformat(),
        "replay_id": row.replay_id,
        "replay_of": row.replay_of,
    }


def _refuse_unknown_ids(conn: Connection, selection: Selection) -> None:
    """Named ids must all exist; one that does not fails the request before any change
    (ids that exist but are not pending are skipped, as a filter skips them)."""
    if not selection.ids:
        return
    unknown = dead_letters.missing(conn, selection.ids)
    if unknown:
        shown = ", ".join(map(str, unknown[:10])) + (" …" if len(unknown) > 10 else "")
        raise NotFound(f"no dead letter with id {shown}; nothing was changed", ids=unknown[:100])


def replay_json(replay: Replay) -> dict[str, Any]:
    return {
        "id": replay.id,
        "state": replay.state,
        "total": replay.total,
        "done": replay.done,
        "failed": replay.failed,
        "dry_run": replay.dry_run,
        "max_per_second": replay.max_per_second,
        "reason": replay.reason,
        "actor": replay.actor,
        "created_at": replay.created_at.isoformat(),
        "finished_at": replay.finished_at.isoformat() if replay.finished_at else None,
    }


class _HasId(Protocol):
    @property
    def id(self) -> int | str: ...


R = TypeVar("R", bound=_HasId)


PAYLOAD_MEDIA = frozenset({"application/json", "application/x-www-form-urlencoded"})
OCTETS = "application/octet-stream"


def paged(rows: list[R], limit: int, render: Callable[[R], dict[str, Any]]) -> Response:
    """Callers fetch limit+1 rows: the extra one only says whether another page exists."""
    page = rows[:limit]
    next_cursor = str(page[-1].id) if len(rows) > limit else None
    return json_response({"items": [render(r) for r in page], "next_cursor": next_cursor})


def int_arg(raw: str | None, name: str, low: int, high: int) -> int | None:
    if raw is None:
        return None
    value = parse_bounded_int(raw)
    if value is None or not low <= value <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}", field=name)
    return value


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any) -> M:
    """Query strings: lax, since every value arrives as text."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _bad_request(exc) from exc


def parse_json(model: type[M], request: Request) -> M:
    """JSON bodies; the models' own types refuse what JSON Schema would refuse."""
    try:
        return model.model_validate_json(read_body(request, MAX_ADMIN_BODY_BYTES) or b"null")
    except ValidationError as exc:
        raise _bad_request(exc) from exc


def _bad_request(exc: ValidationError) -> BadRequest:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    if first["type"] == "json_invalid":
        return BadRequest("body is not valid JSON")
    return BadRequest(f"{where}: {first['msg']}", field=where)
