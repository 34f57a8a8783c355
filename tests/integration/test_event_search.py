"""Searching the event log, showing, erasing and resending an event, on the real stack: events
arrive as signed webhooks, the handlers run, and the admin API is called over HTTP."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from common.db import event_log
from common.db.inbox import EventKey
from common.topology import Topology, get_topology
from hookyard.stack import LocalStack
from tests.support import counting_handler
from tests.support.postgres import TestServer
from tests.support.stack import (
    ADMIN_TOKEN,
    TEST_SECRETS,
    admin,
    running_stack,
    signed_stripe,
    stripe_event,
    wait_for,
)

HANG_S = 120
SECOND = "stripe-count"


def _topology() -> Topology:
    """The shipped one plus a second handler of Stripe payments, so one event has two."""
    raw = get_topology().model_dump()
    raw["handlers"].append({
        "name": SECOND, "module": "tests.support.counting_handler:handle",
        "events": {"stripe": ["payment_intent.succeeded"]},
    })  # fmt: skip
    return Topology.model_validate(raw)


@pytest.fixture(scope="module")
def db(pg_server: TestServer) -> Iterator[str]:
    name = pg_server.create_database()
    try:
        yield name
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def live(
    pg_server: TestServer, db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    patch = pytest.MonkeyPatch()
    for name, value in TEST_SECRETS.items():
        patch.setenv(name, value)
    try:
        with running_stack(
            pg_server, db, tmp_path_factory.mktemp("search"), topology=_topology()
        ) as stack:
            yield stack
    finally:
        patch.undo()


@pytest.fixture(scope="module")
def sql(pg_server: TestServer, db: str) -> Iterator[Engine]:
    engine = pg_server.engine(db)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def client(live: LocalStack) -> Iterator[httpx.Client]:
    with admin(httpx.Client(base_url=live.url, timeout=60)) as http:
        http.headers["X-Hookyard-Operator"] = "alice"
        yield http


def _pay(client: httpx.Client, event_id: str, account: str, **obj: Any) -> None:
    body = stripe_event(event_id, "payment_intent.succeeded", account, **obj)
    sent = client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))
    assert sent.status_code == 202, sent.text


def _ids(client: httpx.Client, **params: Any) -> list[str]:
    response = client.get("/admin/events", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return [item["event_id"] for item in response.json()["items"]]


def _handlers(event: dict[str, Any]) -> dict[str, str]:
    return {h["handler"]: h["outcome"] for h in event["handlers"]}


def _settled(client: httpx.Client, event_id: str, expected: dict[str, str]) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        response = client.get(f"/admin/events/stripe/{event_id}")
        if response.status_code != 200:
            return None
        event: dict[str, Any] = response.json()
        return event if _handlers(event) == expected else None

    result: dict[str, Any] = wait_for(done, HANG_S, 0.1)
    return result


def _insert(engine: Engine, event_id: str, payload: dict[str, Any], **extra: Any) -> None:
    """Straight into the log, as the event-log worker writes it, for volume."""
    body = json.dumps(payload).encode()
    with engine.begin() as conn:
        event_log.record(
            conn,
            event_log.Received(
                key=EventKey(extra.get("source", "stripe"), event_id),
                event_type=extra.get("event_type", "payment_intent.succeeded"),
                received_at=extra.get("received_at", datetime.now(UTC)),
                content_type="application/json",
                body_sha256=hashlib.sha256(body).digest(),
                body_bytes=len(body),
                message_id=f"m-{event_id}",
                payload=body,
                payload_json=json.dumps(payload),
                headers={"user-agent": "Stripe/1.0"},
            ),
        )


@pytest.fixture(scope="module")
def seeded(live: LocalStack) -> dict[str, str]:
    """Stripe payments through the real webhook, settled by both handlers."""
    tag = uuid.uuid4().hex[:8]
    names = {k: f"evt_{k}_{tag}" for k in ("a", "ab", "near", "num", "str", "zero", "dead")}
    with admin(httpx.Client(base_url=live.url, timeout=60)) as client:
        for account in ("acct_a", "acct_ab", "acct_x"):
            client.put(f"/admin/accounts/{account}", json={"currency": "usd"})
        _pay(client, names["a"], "acct_a", amount_received=2500)
        _pay(client, names["ab"], "acct_ab", amount_received=25)
        # The account id in another field: a path search must not find it.
        _pay(client, names["near"], "acct_x", amount_received=1, description="acct_a")
        _pay(client, names["num"], "acct_x", amount_received=3, code=7,
             note={"deep": {"text": "a zebra crossing"}})  # fmt: skip
        _pay(client, names["str"], "acct_x", amount_received=4, code="7")
        _pay(client, names["zero"], "acct_x", amount_received=5, code="007")
        _pay(client, names["dead"], "acct_missing", amount_received=6)
        both = {"ledger": "applied", SECOND: "applied"}
        for key in ("a", "ab", "near", "num", "str", "zero"):
            _settled(client, names[key], both)
        _settled(client, names["dead"], {"ledger": "dead_lettered", SECOND: "applied"})
    return names


def test_a_json_path_finds_exactly_the_event_and_no_near_miss(
    client: httpx.Client, seeded: dict[str, str]
) -> None:
    assert _ids(client, path="data.object.metadata.account_id=acct_a") == [seeded["a"]]
    # A number and the string that spells it are both "7"; "007" is only the string.
    assert set(_ids(client, path="data.object.code=7")) == {seeded["num"], seeded["str"]}
    assert _ids(client, path="data.object.code=007") == [seeded["zero"]]
    assert _ids(client, path="data.object.amount_received=2500") == [seeded["a"]]
    assert _ids(client, path="data.object.amount_received=250") == []
    # Two paths: both must hold.
    assert _ids(client, path=["data.object.code=7", "data.object.amount_received=3"]) == [
        seeded["num"]
    ]
    assert _ids(client, q="zebra") == [seeded["num"]]
    assert _ids(client, q="zebra", path="data.object.code=007") == []


def test_filters_alone_and_combined(
    client: httpx.Client, seeded: dict[str, str], sql: Engine
) -> None:
    ours = set(seeded.values())
    stripe = set(_ids(client, source="stripe")) & ours
    assert stripe == ours
    assert set(_ids(client, source="github")) & ours == set()
    assert set(_ids(client, type="payment_intent.succeeded")) >= ours
    assert _ids(client, type="charge.refunded") == []
    assert set(_ids(client, handler="ledger", outcome="dead_lettered")) == {seeded["dead"]}
    assert set(_ids(client, outcome="dead_lettered")) == {seeded["dead"]}
    assert seeded["dead"] not in _ids(client, handler="ledger", outcome="applied")
    assert seeded["dead"] in _ids(client, handler=SECOND, outcome="applied")
    assert set(_ids(client, handler="ledger", outcome="applied", q="zebra")) == {seeded["num"]}
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert _ids(client, since=future) == []
    assert set(_ids(client, until=future, source="stripe")) >= ours
    # An event no handler has run yet is pending for each handler that takes it.
    _insert(sql, "evt_waiting", {"data": {"object": {"metadata": {"account_id": "acct_w"}}}})
    assert _ids(client, outcome="pending") == ["evt_waiting"]
    assert _ids(client, handler="github-builds", outcome="pending") == []
    [waiting] = client.get("/admin/events", params={"outcome": "pending"}).json()["items"]
    assert _handlers(waiting) == {"ledger": "pending", SECOND: "pending"}
    assert waiting["outcome"] == "pending"


def test_pagination_with_filters_visits_every_match_once_both_ways(
    client: httpx.Client, sql: Engine
) -> None:
    run = uuid.uuid4().hex[:6]
    for i in range(23):
        account = f"acct_page_{run}" if i % 3 else f"acct_other_{run}"
        _insert(sql, f"evt_page_{run}_{i:02d}", {"data": {"object": {"metadata": {
            "account_id": account}}}})  # fmt: skip
    expected = [f"evt_page_{run}_{i:02d}" for i in range(23) if i % 3]
    for order, want in (("asc", expected), ("desc", expected[::-1])):
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {
                "path": f"data.object.metadata.account_id=acct_page_{run}",
                "limit": 4, "order": order, "source": "stripe",
            }  # fmt: skip
            if cursor:
                params["cursor"] = cursor
            page = client.get("/admin/events", params=params).json()
            seen += [item["event_id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == want, order


@pytest.mark.parametrize(
    "query",
    [
        "path=" + ".".join(["a"] * 17) + "=1",
        "path=a.b=" + "x" * 1025,
        "path=a..b=1",
        "path=noequals",
        "path=a%00b=1",
        "q=%00",
        "q=%ff",
        "source=%ff",
        "q=" + "w" * 257,
        "q=",
        "unknown=1",
        "&".join(f"path=a{i}=1" for i in range(9)),
        "since=yesterday",
        "since=2026-01-01",
        "until=0000-01-01T00:00:00Z",
        "cursor=99999999999999999999999",
        "cursor=-1",
        "limit=0",
        "limit=501",
        "order=sideways",
        "outcome=exploded",
        "handler=nobody",
        "source=stripe&source=github",
    ],
)
def test_hostile_queries_are_400_problems(client: httpx.Client, query: str) -> None:
    response = client.get(f"/admin/events?{query}")
    assert response.status_code == 400, (query, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 400


def test_show_has_the_payload_headers_and_every_handlers_outcome(
    client: httpx.Client, seeded: dict[str, str]
) -> None:
    event = client.get(f"/admin/events/stripe/{seeded['dead']}").json()
    assert event["payload"]["data"]["object"]["amount_received"] == 6
    # In the sender's key order, as `stripe_event` wrote it; jsonb would sort by length.
    assert list(event["payload"]) == ["id", "object", "type", "created", "data"]
    assert "payload_base64" not in event
    assert event["headers"]["user-agent"]
    assert "stripe-signature" not in event["headers"]
    by_name = {h["handler"]: h for h in event["handlers"]}
    assert by_name["ledger"]["outcome"] == "dead_lettered"
    assert by_name["ledger"]["dead_letter_id"] == by_name["ledger"]["dead_letters"][0]["id"]
    assert by_name["ledger"]["dead_letters"][0]["state"] == "pending"
    assert "UNKNOWN ACCOUNT" in by_name["ledger"]["last_error"].upper()
    assert by_name[SECOND]["outcome"] == "applied"
    assert by_name[SECOND]["effects"]["rows"] == 1
    assert by_name[SECOND]["attempts"] == 1
    assert event["outcome"] == "dead_lettered"


def _inbox(engine: Engine, event_id: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT subscription, outcome, message_id, processed_at FROM inbox"
                    " WHERE event_id = :id ORDER BY subscription"), {"id": event_id}
        ).all()  # fmt: skip
    return [tuple(r) for r in rows]


def _actions(engine: Engine, action: str) -> list[Any]:
    with engine.connect() as conn:
        query = "SELECT actor, reason, params, result FROM operator_actions WHERE action = :a"
        return list(conn.execute(sa.text(query), {"a": action}).all())


def test_resend_reruns_only_the_handlers_given_and_is_audited(
    client: httpx.Client, live: LocalStack, sql: Engine
) -> None:
    event_id = f"evt_resend_{uuid.uuid4().hex[:6]}"
    account = f"acct_{uuid.uuid4().hex[:6]}"
    _pay(client, event_id, account, amount_received=700)
    _settled(client, event_id, {"ledger": "dead_lettered", SECOND: "applied"})
    second_before = [r for r in _inbox(sql, event_id) if r[0] == SECOND]
    calls = counting_handler.CALLS.count(("stripe", event_id))
    assert client.put(f"/admin/accounts/{account}", json={"currency": "usd"}).status_code == 201

    refused = client.post(f"/admin/events/stripe/{event_id}/resend",
                          json={"reason": "x", "handlers": ["github-builds"]})  # fmt: skip
    assert refused.status_code == 400, refused.text
    sent = client.post(f"/admin/events/stripe/{event_id}/resend",
                       json={"reason": "account exists now", "handlers": ["ledger"]})  # fmt: skip
    assert sent.status_code == 200, sent.text
    [published] = sent.json()["published"]
    assert published["handler"] == "ledger"
    assert published["message_id"]
    _settled(client, event_id, {"ledger": "applied", SECOND: "applied"})
    wait_for(lambda: client.get(f"/admin/accounts/{account}").json()["available"] == 700, HANG_S)
    assert [r for r in _inbox(sql, event_id) if r[0] == SECOND] == second_before
    assert counting_handler.CALLS.count(("stripe", event_id)) == calls
    shown = client.get(f"/admin/events/stripe/{event_id}").json()
    ledger = next(h for h in shown["handlers"] if h["handler"] == "ledger")
    assert ledger["dead_letters"][0]["state"] == "pending"  # the dead letter stays for the record
    assert shown["transactions"][0]["kind"] == "payment"

    # Every handler by default: the ones that applied it acknowledge a duplicate.
    again = client.post(f"/admin/events/stripe/{event_id}/resend", json={"reason": "again"})
    assert {p["handler"] for p in again.json()["published"]} == {"ledger", SECOND}
    assert client.get(f"/admin/accounts/{account}").json()["available"] == 700
    audited = [a for a in _actions(sql, "event.resend") if a.params["event_id"] == event_id]
    assert [(a.actor, a.reason, a.params["handlers"]) for a in audited] == [
        ("alice", "account exists now", ["ledger"]),
        ("alice", "again", ["ledger", SECOND]),
    ]


def test_erase_keeps_the_proof_and_discards_the_copies(client: httpx.Client, sql: Engine) -> None:
    event_id = f"evt_erase_{uuid.uuid4().hex[:6]}"
    _pay(client, event_id, "acct_nowhere", amount_received=5, note="secret words here")
    settled = _settled(client, event_id, {"ledger": "dead_lettered", SECOND: "applied"})
    dead_id = next(h for h in settled["handlers"] if h["handler"] == "ledger")["dead_letter_id"]
    assert _ids(client, q="secret words") == [event_id]
    inbox_before = _inbox(sql, event_id)

    erased = client.post(f"/admin/events/stripe/{event_id}/erase", json={"reason": "GDPR"})
    assert erased.status_code == 200, erased.text
    assert erased.json() == {"erased": True, "dead_letters_discarded": [dead_id]}
    assert client.get(f"/admin/events/stripe/{event_id}/payload").status_code == 410
    assert _ids(client, q="secret words") == []
    assert _ids(client, path="data.object.note=secret words here") == []
    shown = client.get(f"/admin/events/stripe/{event_id}").json()
    assert shown["payload"] is None
    assert "payload_base64" not in shown
    assert shown["headers"] == {}
    assert shown["payload_erased_at"]
    assert shown["erase_reason"] == "GDPR"
    letter = client.get(f"/admin/dead-letters/{dead_id}").json()
    assert (letter["state"], letter["data"]) == ("discarded", "")
    assert not any(k.startswith("header.") for k in letter["attributes"])
    assert _inbox(sql, event_id) == inbox_before
    gone = client.post(f"/admin/events/stripe/{event_id}/resend", json={"reason": "x"})
    assert gone.status_code == 410
    again = client.post(f"/admin/events/stripe/{event_id}/erase", json={"reason": "twice"})
    assert again.json() == {"erased": False, "dead_letters_discarded": []}
    audited = [a for a in _actions(sql, "event.erase") if a.params["event_id"] == event_id]
    assert [(a.reason, a.result["erased"]) for a in audited] == [("GDPR", True), ("twice", False)]
    assert (
        client.post("/admin/events/stripe/evt_none/erase", json={"reason": "x"}).status_code == 404
    )
    assert client.post(f"/admin/events/stripe/{event_id}/erase", json={}).status_code == 400


def _cli(live: LocalStack, *args: str) -> Any:
    from hookyard.cli import app
    from tests.support.cli_runner import Runner

    return Runner().invoke(app, ["events", *args, "--url", live.url, "--token", ADMIN_TOKEN])


def test_cli_lists_shows_erases_and_resends(
    live: LocalStack, client: httpx.Client, seeded: dict[str, str]
) -> None:
    listed = _cli(live, "list", "--path", "data.object.metadata.account_id=acct_a", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert [e["event_id"] for e in json.loads(listed.stdout)] == [seeded["a"]]
    combined = _cli(live, "list", "--source", "stripe", "--handler", "ledger", "--outcome",
                    "dead_lettered", "-q", "acct_missing", "--desc", "--json")  # fmt: skip
    assert combined.exit_code == 0, combined.stderr
    assert [e["event_id"] for e in json.loads(combined.stdout)] == [seeded["dead"]]
    table = _cli(live, "list", "--path", f"id={seeded['dead']}")
    assert table.exit_code == 0, table.stderr
    assert "ledger:dead_lettered" in table.stdout
    assert f"{SECOND}:applied" in table.stdout

    shown = _cli(live, "show", "stripe", seeded["dead"])
    assert shown.exit_code == 0, shown.stderr
    assert '"amount_received": 6' in shown.stdout  # the payload, plain when piped
    assert "dead_lettered" in shown.stdout
    assert "user-agent" in shown.stdout

    event_id = f"evt_cli_{uuid.uuid4().hex[:6]}"
    _pay(client, event_id, "acct_nobody", amount_received=9)
    _settled(client, event_id, {"ledger": "dead_lettered", SECOND: "applied"})
    resent = _cli(live, "resend", "stripe", event_id, "--handler", SECOND, "--reason", "check")
    assert resent.exit_code == 0, resent.stderr
    assert f"to {SECOND}" in resent.stdout
    erased = _cli(live, "erase", "stripe", event_id, "--reason", "asked to")
    assert erased.exit_code == 0, erased.stderr
    assert erased.stdout.startswith(f"erased the payload of stripe/{event_id}")
    again = _cli(live, "erase", "stripe", event_id, "--reason", "asked to")
    assert "already erased" in again.stdout

    for args in (["show", "stripe", "evt_nope"], ["erase", "stripe", "evt_nope", "--reason", "x"],
                 ["resend", "stripe", "evt_nope", "--reason", "x"]):  # fmt: skip
        missing = _cli(live, *args)
        assert missing.exit_code == 1, args
        assert missing.stderr.count("\n") == 1
        assert missing.stderr.startswith("error: no event stripe/evt_nope")
    gone = _cli(live, "resend", "stripe", event_id, "--reason", "x")
    assert gone.exit_code == 1
    assert "erased" in gone.stderr
