"""Handlers as plug-ins, through the worker's own delivery path, on real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Connection, Engine

from common.db import dead_letters, retention
from common.errors import ConfigError, ServiceUnavailable, TransientError
from common.topology import Topology, get_topology
from tests.support.pushes import handler_push
from workers.handlers import LoadedHandler, load_handlers
from workers.plugin import Effects, Event, Message
from workers.push import Worker

SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
SHOP = {"X-Shopify-Shop-Domain": "shop-1.myshopify.com", "User-Agent": "Shopify-Captain-Hook"}


def push_body(ref: str = "refs/heads/main", **extra: Any) -> bytes:
    body = {
        "ref": ref, "before": "0" * 40, "after": SHA, "deleted": False,
        "repository": {"id": 1, "full_name": "octo/app"}, "pusher": {"name": "mona"},
        **extra,
    }  # fmt: skip
    return json.dumps(body).encode()


def order_body(order_id: int = 820982911946154508, lines: int = 2) -> bytes:
    items = [{"id": 466157049 + n, "sku": f"SKU-{n}", "quantity": n + 1} for n in range(lines)]
    return json.dumps({"id": order_id, "line_items": items}).encode()


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).mappings())


def inbox_of(engine: Engine, subscription: str) -> list[Any]:
    return rows(
        engine,
        "SELECT event_id, outcome, effects FROM inbox WHERE subscription = :s ORDER BY id",
        s=subscription,
    )


@pytest.fixture
def worker(engine: Engine) -> Worker:
    return Worker(engine)


def test_a_push_to_a_branch_asks_for_one_build_however_often_it_arrives(
    worker: Worker, engine: Engine
) -> None:
    for _ in range(3):
        worker.deliver("github-builds", handler_push("github-builds", "github", "d-1", "push",
                                                     push_body()))  # fmt: skip
    [message] = rows(engine, "SELECT id, topic, data, attributes FROM outbound_messages")
    assert message["topic"] == "build-requests"
    assert json.loads(bytes(message["data"])) == {
        "repository": "octo/app", "branch": "main", "commit": SHA,
        "requested_by": "mona", "github_delivery": "d-1",
    }  # fmt: skip
    assert message["attributes"] == {"repository": "octo/app", "branch": "main"}
    [claimed] = inbox_of(engine, "github-builds")
    assert claimed["outcome"] == "applied"
    assert claimed["effects"] == {"rows": 0, "messages": [message["id"]], "ignored": None}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (push_body(ref="refs/tags/v1.0"), "not a branch: refs/tags/v1.0"),
        (push_body(deleted=True), "branch deleted"),
    ],
)
def test_a_push_that_builds_nothing_is_ignored_with_its_reason(
    worker: Worker, engine: Engine, body: bytes, reason: str
) -> None:
    worker.deliver("github-builds", handler_push("github-builds", "github", "d-2", "push", body))
    assert rows(engine, "SELECT id FROM outbound_messages") == []
    [claimed] = inbox_of(engine, "github-builds")
    assert claimed["outcome"] == "ignored"
    assert claimed["effects"]["ignored"] == reason


@pytest.mark.parametrize(("source", "event_type"), [("github", "pull_request"), ("stripe", "push")])
def test_an_event_the_handler_does_not_take_is_acknowledged_without_a_trace(
    worker: Worker, engine: Engine, source: str, event_type: str
) -> None:
    """The filter would keep it away; the handler does not rely on configuration (Google's
    emulator applies none), and an event that is not its business is not in its inbox."""
    worker.deliver(
        "github-builds", handler_push("github-builds", source, "d-3", event_type, push_body())
    )
    assert inbox_of(engine, "github-builds") == []
    assert rows(engine, "SELECT id FROM outbound_messages") == []
    assert rows(engine, "SELECT id FROM dead_letters") == []


def test_a_bad_push_payload_is_a_dead_letter_naming_the_field_not_the_value(
    worker: Worker, engine: Engine
) -> None:
    body = push_body(after="not-a-commit-but-maybe-a-secret")
    worker.deliver("github-builds", handler_push("github-builds", "github", "d-4", "push", body))
    with engine.connect() as conn:
        [row] = dead_letters.list_page(conn, dead_letters.Selection())
    assert row.subscription == "github-builds"
    assert row.error_message is not None
    assert "after" in row.error_message
    assert "maybe-a-secret" not in row.error_message
    assert inbox_of(engine, "github-builds") == []


def test_an_order_reserves_each_line_once(worker: Worker, engine: Engine) -> None:
    deliver = worker.deliver
    deliver("shopify-stock", handler_push("shopify-stock", "shopify", "w-1", "orders/create",
                                          order_body(), headers=SHOP))  # fmt: skip
    # Redelivered, and the same order again under another webhook id.
    deliver("shopify-stock", handler_push("shopify-stock", "shopify", "w-1", "orders/create",
                                          order_body(), headers=SHOP))  # fmt: skip
    deliver("shopify-stock", handler_push("shopify-stock", "shopify", "w-2", "orders/create",
                                          order_body(), headers=SHOP))  # fmt: skip
    reserved = rows(
        engine,
        "SELECT shop, order_id, sku, quantity, event_id FROM stock_reservations ORDER BY sku",
    )
    assert [(r["sku"], r["quantity"], r["event_id"]) for r in reserved] == [
        ("SKU-0", 1, "w-1"), ("SKU-1", 2, "w-1"),
    ]  # fmt: skip
    assert {r["shop"] for r in reserved} == {"shop-1.myshopify.com"}
    effects = [r["effects"] for r in inbox_of(engine, "shopify-stock")]
    assert effects == [{"rows": 2, "messages": [], "ignored": None}, None]


def test_an_order_without_its_shop_dead_letters_that_handler_only(
    worker: Worker, engine: Engine
) -> None:
    body = order_body()
    worker.deliver("shopify-stock", handler_push("shopify-stock", "shopify", "w-3",
                                                 "orders/create", body))  # fmt: skip
    worker.deliver("event-log", handler_push("event-log", "shopify", "w-3", "orders/create", body))
    [dead] = rows(engine, "SELECT subscription, error_message FROM dead_letters")
    assert dead["subscription"] == "shopify-stock"
    assert "x-shopify-shop-domain" in dead["error_message"]
    assert rows(engine, "SELECT event_id FROM event_log") == [{"event_id": "w-3"}]
    assert rows(engine, "SELECT shop FROM stock_reservations") == []


def _loaded(
    name: str, source: str, function: Any, topology: Topology | None = None
) -> LoadedHandler:
    from common.topology import Handler

    spec = Handler(name=name, module="tests:fn", events={source: ["*"]})
    topics = frozenset(t.name for t in (topology or get_topology()).topics)
    return LoadedHandler(spec, function, topics)


def test_a_failing_handler_leaves_nothing_behind_and_is_retried(engine: Engine) -> None:
    def half_done(event: Event, tx: Connection) -> Effects:
        tx.execute(
            sa.text(
                "INSERT INTO stock_reservations (shop, order_id, line_item_id, quantity,"
                " event_id) VALUES ('s', 'o', 'l', 1, :id)"
            ),
            {"id": event.id},
        )
        raise TransientError("the warehouse is away")

    worker = Worker(engine, routes={"flaky": _loaded("flaky", "shopify", half_done)})
    with pytest.raises(ServiceUnavailable):
        worker.deliver("flaky", handler_push("flaky", "shopify", "w-4", "orders/create", b"{}"))
    assert rows(engine, "SELECT shop FROM stock_reservations") == []
    assert inbox_of(engine, "flaky") == []
    [failure] = rows(engine, "SELECT subscription, error_message FROM delivery_failures")
    assert failure == {"subscription": "flaky", "error_message": "the warehouse is away"}


def test_a_message_for_an_undeclared_topic_is_a_dead_letter(engine: Engine) -> None:
    def stray(event: Event, tx: Connection) -> Effects:
        return Effects(messages=[Message("no-such-topic", {"x": 1})])

    worker = Worker(engine, routes={"stray": _loaded("stray", "github", stray)})
    worker.deliver("stray", handler_push("stray", "github", "d-5", "push", b"{}"))
    [dead] = rows(engine, "SELECT subscription, error_message FROM dead_letters")
    assert dead["subscription"] == "stray"
    assert "no-such-topic" in dead["error_message"]
    assert rows(engine, "SELECT id FROM outbound_messages") == []


def test_a_handler_that_cannot_be_imported_stops_the_worker_at_start_up() -> None:
    raw = get_topology().model_dump()
    raw["handlers"].append(
        {"name": "ghost", "module": "handlers.no_such_module:handle", "events": {"github": ["*"]}}
    )
    with pytest.raises(ConfigError, match=r"ghost: cannot import handlers\.no_such_module"):
        load_handlers(Topology.model_validate(raw))
    raw["handlers"][-1]["module"] = "handlers.github_builds:no_such_function"
    with pytest.raises(ConfigError, match="is not a function"):
        load_handlers(Topology.model_validate(raw))


def test_the_event_log_keeps_bytes_headers_and_a_searchable_payload(
    worker: Worker, engine: Engine
) -> None:
    body = push_body()
    headers = {"X-GitHub-Delivery": "d-6", "User-Agent": "GitHub-Hookshot/abc"}
    worker.deliver("event-log", handler_push("event-log", "github", "d-6", "push", body,
                                             headers=headers))  # fmt: skip
    [row] = rows(
        engine,
        "SELECT payload, payload_json, headers,"
        " search @@ to_tsquery('simple', 'mona') AS found_word,"
        ' payload_json @> \'{"repository": {"full_name": "octo/app"}}\' AS found_path'
        " FROM event_log WHERE event_id = 'd-6'",
    )
    assert bytes(row["payload"]) == body
    assert row["payload_json"] == json.loads(body)
    assert row["headers"] == {"x-github-delivery": "d-6", "user-agent": "GitHub-Hookshot/abc"}
    assert row["found_word"] is True
    assert row["found_path"] is True


def test_a_form_body_is_searchable_as_its_json_payload_field(
    worker: Worker, engine: Engine
) -> None:
    body = urlencode({"payload": push_body().decode()}).encode()
    form = "application/x-www-form-urlencoded"
    push = handler_push("event-log", "github", "d-7", "push", body, content_type=form)
    worker.deliver("event-log", push)
    [row] = rows(engine, "SELECT payload, payload_json FROM event_log")
    assert bytes(row["payload"]) == body
    assert row["payload_json"]["repository"]["full_name"] == "octo/app"


@pytest.mark.parametrize(
    "body",
    [b'{"amount": 1e999}', b'{"n": NaN}', b"not json at all", b"\xff\xfe"],
)
def test_a_payload_postgresql_cannot_search_is_still_kept_whole(
    worker: Worker, engine: Engine, body: bytes
) -> None:
    worker.deliver("event-log", handler_push("event-log", "standard", "x-1", "t", body))
    [row] = rows(engine, "SELECT payload, payload_json, search FROM event_log")
    assert bytes(row["payload"]) == body
    assert row["payload_json"] is None
    assert row["search"] is None


def test_retention_erases_payloads_per_source_and_keeps_the_rows(
    worker: Worker, engine: Engine
) -> None:
    for source, event_id in (("github", "old-gh"), ("shopify", "old-sh"), ("stripe", "new")):
        worker.deliver("event-log", handler_push("event-log", source, event_id, "t", b"{}",
                                                 headers={"User-Agent": "ua"}))  # fmt: skip
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE event_log SET received_at = :at WHERE event_id LIKE 'old-%'"),
            {"at": now - timedelta(days=10)},
        )
        cutoffs = {"github": now - timedelta(days=7), "shopify": now - timedelta(days=30)}
        erased = retention.erase_payloads(conn, cutoffs, now - timedelta(days=30), limit=100)
    assert erased == 1
    kept = {r["event_id"]: r for r in rows(
        engine, "SELECT event_id, payload, headers, erase_reason, payload_erased_at FROM event_log"
    )}  # fmt: skip
    assert set(kept) == {"old-gh", "old-sh", "new"}
    assert kept["old-gh"]["payload"] is None
    assert kept["old-gh"]["headers"] == {}
    assert kept["old-gh"]["erase_reason"] == "retention"
    assert kept["old-sh"]["payload"] is not None
    assert kept["new"]["payload"] is not None


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_shaped = st.fixed_dictionaries(
    {},
    optional={
        "ref": _json_values | st.sampled_from(["refs/heads/x", "refs/tags/y", ""]),
        "after": _json_values | st.just(SHA),
        "deleted": _json_values,
        "repository": _json_values | st.fixed_dictionaries({"full_name": _json_values}),
        "id": _json_values,
        "line_items": st.lists(
            st.fixed_dictionaries(
                {"id": _json_values, "quantity": _json_values | st.integers()},
                optional={"sku": _json_values},
            ),
            max_size=3,
        )
        | _json_values,
    },
)
_bodies = (
    _shaped.map(lambda d: json.dumps(d).encode())
    | _json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=64)
    | st.just(b"[" * 5000)
)


@settings(
    max_examples=60, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(body=_bodies, handler=st.sampled_from(["github-builds", "shopify-stock"]))
def test_hostile_payloads_are_applied_ignored_or_dead_lettered_never_retried(
    worker: Worker, engine: Engine, body: bytes, handler: str
) -> None:
    """A payload no retry can fix must never make the broker retry it (a 503)."""
    source, event_type = {"github-builds": ("github", "push"),
                          "shopify-stock": ("shopify", "orders/create")}[handler]  # fmt: skip
    event_id = f"h-{uuid.uuid4().hex}"
    worker.deliver(handler, handler_push(handler, source, event_id, event_type, body,
                                         headers=SHOP))  # fmt: skip
    with engine.connect() as conn:
        settled = conn.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM inbox WHERE event_id = :id)"
                " + (SELECT count(*) FROM dead_letters WHERE event_id = :id)"
            ),
            {"id": event_id},
        ).scalar()
    assert settled == 1


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (Message("build-requests", {"x": {1, 2}}), "not JSON-serialisable"),
        (Message("build-requests", b"x", {"googkey": "v"}), "starts with goog"),
        (Message("build-requests", b"x", {"k": "v" * 1025}), "over 1024 bytes"),
        (Message("build-requests", b"x", {f"k{n}": "v" for n in range(101)}), "100 attributes"),
        (Message("build-requests", b"x", {"k": "\x00"}), "storable text"),
        (Message("build-requests", b"x", {"k": 1}), "must be strings"),  # type: ignore[dict-item]
        (Message("build-requests", b"x" * 10_000_001), "over 10000000 bytes"),
    ],
)
def test_a_message_pubsub_would_refuse_is_a_dead_letter_before_anything_commits(
    engine: Engine, message: Message, reason: str
) -> None:
    """After commit nothing could undo the handler's effects, so the check comes first."""

    def sends(event: Event, tx: Connection) -> Effects:
        return Effects(messages=[message])

    worker = Worker(engine, routes={"sends": _loaded("sends", "github", sends)})
    worker.deliver("sends", handler_push("sends", "github", "d-8", "push", b"{}"))
    [dead] = rows(engine, "SELECT error_message FROM dead_letters")
    assert reason in dead["error_message"]
    assert rows(engine, "SELECT id FROM outbound_messages") == []
    assert inbox_of(engine, "sends") == []


def test_a_handler_returning_something_else_is_a_dead_letter_not_a_retry(engine: Engine) -> None:
    def sloppy(event: Event, tx: Connection) -> Any:
        return {"rows": 1}

    worker = Worker(engine, routes={"sloppy": _loaded("sloppy", "github", sloppy)})
    worker.deliver("sloppy", handler_push("sloppy", "github", "d-9", "push", b"{}"))
    [dead] = rows(engine, "SELECT error_message FROM dead_letters")
    assert dead["error_message"] == "handler sloppy returned dict, not Effects"


def test_a_handler_that_claims_its_own_inbox_still_gets_its_messages_published(
    engine: Engine,
) -> None:
    from workers.plugin import claims_own_inbox

    @claims_own_inbox
    def own(event: Event, tx: Connection) -> Effects:
        return Effects(messages=[Message("build-requests", {"id": event.id})])

    worker = Worker(engine, routes={"own": _loaded("own", "github", own)})
    worker.deliver("own", handler_push("own", "github", "d-10", "push", b"{}"))
    [message] = rows(engine, "SELECT topic, subscription FROM outbound_messages")
    assert message == {"topic": "build-requests", "subscription": "own"}
