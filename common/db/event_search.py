"""What an operator's event search means, as SQL over `event_log`, and what each handler made
of an event: pure logic, no I/O, so both are tested without a database.

Query plans, measured with EXPLAIN on 100,000 rows (the `make bench` figure "search"):
- `path`: `payload_json @> '{"a":{"b":"v"}}'` is a Bitmap Index Scan on the GIN
  `jsonb_path_ops` index (`event_log_payload_json`); a value that is also a JSON literal
  (`2500`, `true`, `null`) becomes two containments in a BitmapOr of two such scans.
- `q`: `search @@ websearch_to_tsquery('simple', q)` is a Bitmap Index Scan on the GIN
  index `event_log_search` when its words are rare (hundreds of rows); words in thousands
  of rows (`refs/heads/main`) walk the primary key in id order and stop at the page's end,
  which the planner rightly finds cheaper than a bitmap over thousands.
- `type` uses `event_log_type (event_type, id)`; `since`/`until` `event_log_received_at`;
  no filter at all walks the primary key in id order and stops at the page's end.
- `handler`/`outcome` are EXISTS probes per candidate row on the inbox key
  (`inbox_event`), the pending dead letters' unique index and the delivery failures'
  primary key: cheap per row, so they narrow what the indexed filters found; alone they
  walk the id order until a page is full.
Every value is a bound parameter; only the shape of the SQL depends on the request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from common.topology import Handler

Outcome = Literal["applied", "ignored", "failed", "dead_lettered", "pending"]
OUTCOMES: tuple[Outcome, ...] = ("applied", "ignored", "failed", "dead_lettered", "pending")
SEVERITY: dict[str, int] = {
    "ignored": 0, "applied": 1, "pending": 2, "failed": 3, "dead_lettered": 4,
}  # fmt: skip
"""`outcome` of an event is its handlers' worst: the one an operator must look at."""
RECORDED = "recorded"
"""The summary for an event no handler takes: it is in the log, and that is all."""

MAX_PATHS = 8
MAX_PATH_SEGMENTS = 16
MAX_SEGMENT_CHARS = 128
MAX_VALUE_CHARS = 1024
MAX_QUERY_CHARS = 256
_JSON_LITERAL = re.compile(r"-?(0|[1-9][0-9]{0,99})(\.[0-9]{1,100})?([eE][+-]?[0-9]{1,3})?")


@dataclass(frozen=True, slots=True)
class PathMatch:
    """`a.b.c=value`: the payload has `value` at that path (through objects, not arrays)."""

    segments: tuple[str, ...]
    value: str

    @classmethod
    def parse(cls, text: str) -> PathMatch:
        """Raises ValueError with a message fit for a 400."""
        dotted, equals, value = text.partition("=")
        if not equals:
            raise ValueError("path must be a.b.c=value")
        segments = tuple(dotted.split("."))
        if len(segments) > MAX_PATH_SEGMENTS:
            raise ValueError(f"path may have at most {MAX_PATH_SEGMENTS} segments")
        if any(not s or len(s) > MAX_SEGMENT_CHARS for s in segments):
            raise ValueError(f"each path segment must be 1 to {MAX_SEGMENT_CHARS} characters")
        if len(value) > MAX_VALUE_CHARS:
            raise ValueError(f"path value may be at most {MAX_VALUE_CHARS} characters")
        return cls(segments, value)

    def documents(self) -> list[str]:
        """The jsonb documents to test with `@>`: the value as a string, and as the JSON
        literal it also spells (a number, true, false, null), if it does."""
        literals = [json.dumps(self.value, ensure_ascii=False)]
        if self.value in ("true", "false", "null") or _JSON_LITERAL.fullmatch(self.value):
            literals.append(self.value)
        return [self._nest(literal) for literal in literals]

    def _nest(self, literal: str) -> str:
        document = literal
        for segment in reversed(self.segments):
            document = "{" + json.dumps(segment, ensure_ascii=False) + ":" + document + "}"
        return document


@dataclass(frozen=True, slots=True)
class EventQuery:
    source: str | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    handler: str | None = None
    outcome: Outcome | None = None
    paths: tuple[PathMatch, ...] = ()
    text: str | None = None
    cursor: int | None = None
    descending: bool = False
    limit: int = 100


@dataclass
class _Sql:
    clauses: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def bind(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f":{name}"


def where(query: EventQuery, handlers: Sequence[Handler]) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (alias `e` for event_log) and its parameters."""
    sql = _Sql()
    if query.source is not None:
        sql.clauses.append(f"e.source = {sql.bind(query.source)}")
    if query.type is not None:
        sql.clauses.append(f"e.event_type = {sql.bind(query.type)}")
    if query.since is not None:
        sql.clauses.append(f"e.received_at >= {sql.bind(query.since)}")
    if query.until is not None:
        sql.clauses.append(f"e.received_at < {sql.bind(query.until)}")
    for path in query.paths:
        either = [f"e.payload_json @> CAST({sql.bind(d)} AS jsonb)" for d in path.documents()]
        sql.clauses.append(either[0] if len(either) == 1 else f"({' OR '.join(either)})")
    if query.text is not None:
        sql.clauses.append(f"e.search @@ websearch_to_tsquery('simple', {sql.bind(query.text)})")
    if query.handler is not None or query.outcome is not None:
        chosen = [h for h in handlers if query.handler is None or h.name == query.handler]
        per_handler = [_handler_clause(sql, h, query.outcome) for h in chosen]
        sql.clauses.append(f"({' OR '.join(per_handler)})" if per_handler else "FALSE")
    if query.cursor is not None:
        sql.clauses.append(f"e.id {'<' if query.descending else '>'} {sql.bind(query.cursor)}")
    return " AND ".join(sql.clauses) or "TRUE", sql.params


def _handler_clause(sql: _Sql, handler: Handler, outcome: Outcome | None) -> str:
    name = sql.bind(handler.name)
    takes = _takes(sql, handler)
    inbox = (
        "EXISTS (SELECT 1 FROM inbox AS i WHERE i.subscription = {name} AND i.source = e.source"
        " AND i.event_id = e.event_id{extra})"
    )
    dead = (
        f"EXISTS (SELECT 1 FROM dead_letters AS d WHERE d.subscription = {name}"
        " AND d.source = e.source AND d.event_id = e.event_id AND d.state = 'pending')"
    )
    failed = (
        f"EXISTS (SELECT 1 FROM delivery_failures AS f WHERE f.subscription = {name}"
        " AND f.message_id = e.source || '/' || e.event_id)"
    )
    any_inbox = inbox.format(name=name, extra="")
    if outcome is None:
        return takes
    if outcome in ("applied", "ignored"):
        return inbox.format(name=name, extra=f" AND i.outcome = {sql.bind(outcome)}")
    if outcome == "dead_lettered":
        return f"(NOT {any_inbox} AND {dead})"
    if outcome == "failed":
        return f"(NOT {any_inbox} AND NOT {dead} AND {failed})"
    return f"({takes} AND NOT {any_inbox} AND NOT {dead} AND NOT {failed})"


def _takes(sql: _Sql, handler: Handler) -> str:
    """`Handler.takes` in SQL."""
    per_source = []
    for source, patterns in handler.events.items():
        clause = f"e.source = {sql.bind(source)}"
        if "*" not in patterns:
            types = [
                f"starts_with(e.event_type, {sql.bind(p[:-1])})"
                if p.endswith("*")
                else f"e.event_type = {sql.bind(p)}"
                for p in patterns
            ]
            clause += f" AND ({' OR '.join(types)})"
        per_source.append(f"({clause})")
    return f"({' OR '.join(per_source)})"


# -- what each handler made of an event --------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboxRecord:
    handler: str
    outcome: str
    effects: Any
    processed_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    handler: str
    id: int
    state: str
    reason: str | None
    delivery_count: int


@dataclass(frozen=True, slots=True)
class FailureRecord:
    handler: str
    attempts: int
    last_error: str


@dataclass(frozen=True, slots=True)
class Records:
    """What the database holds about one event, per handler."""

    inbox: Sequence[InboxRecord] = ()
    dead_letters: Sequence[DeadLetterRecord] = ()
    failures: Sequence[FailureRecord] = ()


@dataclass(frozen=True, slots=True)
class HandlerOutcome:
    handler: str
    outcome: Outcome
    effects: Any
    attempts: int
    """Deliveries so far: the transient failures, plus the one that applied or dead-lettered."""
    last_error: str | None
    dead_letter_id: int | None
    """The pending dead letter, when there is one."""
    dead_letters: tuple[DeadLetterRecord, ...]
    processed_at: datetime | None


def outcomes(
    source: str, event_type: str | None, handlers: Sequence[Handler], records: Records
) -> list[HandlerOutcome]:
    """One entry per handler that takes the event per the topology, or that left a record of
    it (a handler whose types changed since): the inbox row is proof it ran, a pending dead
    letter that it gave up, a failure row that it is being retried, nothing that it waits."""
    out = []
    for handler in handlers:
        name = handler.name
        inbox = next((r for r in records.inbox if r.handler == name), None)
        dead = tuple(r for r in records.dead_letters if r.handler == name)
        failure = next((r for r in records.failures if r.handler == name), None)
        if not (handler.takes(source, event_type) or inbox or dead or failure):
            continue
        pending = next((d for d in dead if d.state == "pending"), None)
        failures = failure.attempts if failure else 0
        outcome: Outcome
        if inbox is not None:
            outcome = "ignored" if inbox.outcome == "ignored" else "applied"
            attempts = failures + 1
        elif pending is not None:
            outcome, attempts = "dead_lettered", max(failures, pending.delivery_count, 1)
        elif failure is not None:
            outcome, attempts = "failed", failures
        else:
            outcome, attempts = "pending", 0
        last_error = failure.last_error if failure else None
        if pending is not None and pending.reason:
            last_error = pending.reason
        out.append(
            HandlerOutcome(
                handler=name, outcome=outcome, effects=inbox.effects if inbox else None,
                attempts=attempts, last_error=last_error,
                dead_letter_id=pending.id if pending else None, dead_letters=dead,
                processed_at=inbox.processed_at if inbox else None,
            )
        )  # fmt: skip
    return out


def summary(handled: Sequence[HandlerOutcome]) -> str:
    """The worst handler outcome, or `recorded` when no handler takes the event."""
    if not handled:
        return RECORDED
    return max((h.outcome for h in handled), key=SEVERITY.__getitem__)
