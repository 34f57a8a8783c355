"""The operators' read-only lists on the real stack, over real sockets: replays, the audit
trail, accounts, and an account's notification attempts.

One stack for the module. The data is made as in production: accounts by PUT, payments by
signed Stripe webhooks, dead letters by payments for an account that does not exist,
replays, dry runs, cancels and discards by the admin API (which audits them), notification
attempts by a receiver on 127.0.0.1 that fails once. Only the slow replays' dead letters
are inserted directly: hundreds of them, so that at one per second a replay is still
running (or cancellable) however slowly this machine runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from hookyard.stack import LocalStack
from tests.support.postgres import TestServer
from tests.support.receiver import Receiver, receiver
from tests.support.stack import (
    ADMIN_TOKEN,
    admin,
    module_stack,
    signed_stripe,
    stripe_event,
    wait_for,
)

pytestmark = pytest.mark.timeout(600)

PROBLEM = "application/problem+json"
NOTIFY_SECRET = "hunter2-in-the-query"
PREFIXED = [f"lst-a-{n:03d}" for n in range(7)]
OTHER_ACCOUNTS = ["lst-b-000", "lst_a_x", "lst-quiet"]
SLOW_SEEDED = 600
"""At one per second, ten minutes of replay: longer than this module runs."""


@dataclass
class World:
    stack: LocalStack
    client: httpx.Client
    hook: Receiver
    replays: dict[str, int]
    """Replay ids by role: done (applied nothing new), cancelled, running, empty_1..3."""


@pytest.fixture(scope="module")
def world(pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with (
        receiver(statuses=[500]) as hook,
        module_stack(pg_server, tmp_path_factory.mktemp("listings")) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=60)) as client,
    ):
        _make_accounts(client, hook)
        replays = _make_replays_and_audit(stack, client)
        wait_for(
            lambda: (
                len(hook.received) >= 3
                and client.get("/admin/accounts/lst-notify").json()["pending_notifications"] == 0
            ),
            timeout=120,
        )
        yield World(stack, client, hook, replays)
        client.post(f"/admin/replays/{replays['running']}/cancel", json={"reason": "done"})


def _make_accounts(client: httpx.Client, hook: Receiver) -> None:
    for account in [*PREFIXED, *OTHER_ACCOUNTS]:
        assert client.put(f"/admin/accounts/{account}", json={"currency": "usd"}).status_code == 201
    notify = {"currency": "usd", "notify_url": f"{hook.url}?token={NOTIFY_SECRET}"}
    assert client.put("/admin/accounts/lst-notify", json=notify).status_code == 201
    for n, amount in enumerate([100, 250]):
        _pay(client, f"evt_lst_notify_{n}", "lst-notify", amount)


def _make_replays_and_audit(stack: LocalStack, client: httpx.Client) -> dict[str, int]:
    for n in range(2):
        _pay(client, f"evt_lst_missing_{n}", "lst-missing", 10 + n)

    def missing_dead_letters() -> list[dict[str, Any]]:
        params = {"reason": "lst-missing"}
        items: list[dict[str, Any]] = client.get("/admin/dead-letters", params=params).json()[
            "items"
        ]
        return items if len(items) == 2 else []

    dead = wait_for(missing_dead_letters)
    discarded = client.post(
        "/admin/dead-letters/discard",
        json={"ids": [dead[0]["id"]], "reason": "not ours"},
        headers=_as("alice"),
    )
    assert discarded.json() == {"discarded": 1}
    dry = client.post("/admin/dead-letters/replay", headers=_as("bob"), json={
        "ids": [dead[1]["id"]], "reason": "how many?", "dry_run": True})  # fmt: skip
    assert dry.json() == {"dry_run": True, "total": 1}
    started = client.post(
        "/admin/dead-letters/replay",
        json={"ids": [dead[1]["id"]], "reason": "try again"},
        headers=_as("bob"),
    ).json()
    wait_for(lambda: _replay(client, started["replay_id"])["state"] == "done")

    _seed_slow_dead_letters(stack)
    slow = {"reason": "slow one", "max_per_second": 1}
    carol = _as("carol")
    cancelled = client.post(
        "/admin/dead-letters/replay",
        json={**slow, "filter": {"reason": "lst-slow-1"}},
        headers=carol,
    ).json()["replay_id"]
    stopped = client.post(
        f"/admin/replays/{cancelled}/cancel", json={"reason": "wrong filter"}, headers=carol
    )
    assert stopped.json()["state"] == "cancelled"
    running = client.post(
        "/admin/dead-letters/replay",
        json={**slow, "filter": {"reason": "lst-slow-2"}},
        headers=carol,
    ).json()["replay_id"]
    replays = {"done": started["replay_id"], "cancelled": cancelled, "running": running}
    for n in range(1, 4):
        empty = client.post("/admin/dead-letters/replay", headers=_as("dave"), json={
            "filter": {"source": "no-such-source"}, "reason": f"nothing {n}"})  # fmt: skip
        assert empty.json()["state"] == "done"
        replays[f"empty_{n}"] = empty.json()["replay_id"]
    return replays


def _seed_slow_dead_letters(stack: LocalStack) -> None:
    assert stack.engine is not None
    with stack.engine.begin() as conn:
        conn.execute(_SEED, {"n": SLOW_SEEDED})


_SEED = sa.text(
    """
    INSERT INTO dead_letters (origin, subscription, message_id, source, event_id, event_type,
                              data, attributes, error_message)
    SELECT 'worker', 'ledger', 'lst-m' || b || '-' || n, 'stripe',
           'evt_lst_slow_' || b || '_' || n, 'customer.created',
           convert_to('{"type":"customer.created"}', 'UTF8'),
           jsonb_build_object('source', 'stripe', 'event_id', 'evt_lst_slow_' || b || '_' || n),
           'lst-slow-' || b
    FROM generate_series(1, :n) AS n, generate_series(1, 2) AS b
    """
)


def _as(operator: str) -> dict[str, str]:
    """Who is acting, as the audit trail records it."""
    return {"X-Hookyard-Operator": operator}


def _pay(client: httpx.Client, event_id: str, account: str, amount: int) -> None:
    body = stripe_event(event_id, "payment_intent.succeeded", account, amount_received=amount)
    sent = client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))
    assert sent.status_code == 202, sent.text


def _replay(client: httpx.Client, replay_id: int) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/admin/replays/{replay_id}").json()
    return body


def _walk(client: httpx.Client, path: str, **params: Any) -> list[list[dict[str, Any]]]:
    """Every page, following `next_cursor` until it is null."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor is not None else {})}
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 1000, "next_cursor never ends"


def _flat(pages: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [item for page in pages for item in page]


def _ids(items: list[dict[str, Any]]) -> list[Any]:
    return [item["id"] for item in items]


def _assert_pages(pages: list[list[dict[str, Any]]], limit: int) -> None:
    """Every page but the last is full and the last is not empty unless it is the only one."""
    assert all(len(page) == limit for page in pages[:-1]), [len(p) for p in pages]
    assert 0 < len(pages[-1]) <= limit or len(pages) == 1


# -- replays -----------------------------------------------------------------------------


def test_replays_newest_first_across_pages(world: World) -> None:
    pages = _walk(world.client, "/admin/replays", limit=2)
    _assert_pages(pages, 2)
    items = _flat(pages)
    ids = _ids(items)
    assert ids == sorted(set(ids), reverse=True), "newest first, none twice"
    assert set(ids) == set(world.replays.values()), "none missing"
    assert len(pages) == 3
    for item in items:
        shown = _replay(world.client, item["id"])
        if item["id"] == world.replays["running"]:  # its counts move on
            assert set(item) == set(shown)
        else:
            assert item == shown, "the same shape as GET /replays/{id}"
    newest = items[0]
    assert newest["id"] == world.replays["empty_3"]
    assert (newest["actor"], newest["reason"], newest["total"]) == ("dave", "nothing 3", 0)


def test_replays_filtered_by_state(world: World) -> None:
    def listed(state: str) -> list[int]:
        return _ids(_flat(_walk(world.client, "/admin/replays", state=state, limit=1)))

    r = world.replays
    assert listed("running") == [r["running"]]
    assert listed("cancelled") == [r["cancelled"]]
    assert listed("done") == [r["empty_3"], r["empty_2"], r["empty_1"], r["done"]]


# -- the audit trail ---------------------------------------------------------------------


def _audit(world: World, **params: Any) -> list[dict[str, Any]]:
    return _flat(_walk(world.client, "/admin/audit", **params))


def test_the_audit_trail_newest_first_with_what_each_call_did(world: World) -> None:
    pages = _walk(world.client, "/admin/audit", limit=3)
    _assert_pages(pages, 3)
    entries = _flat(pages)
    ids = _ids(entries)
    assert ids == sorted(set(ids), reverse=True), "newest first, none twice"
    assert [(e["actor"], e["action"]) for e in reversed(entries)] == [
        ("alice", "discard"),
        ("bob", "replay.dry-run"),
        ("bob", "replay.start"),
        ("carol", "replay.start"),
        ("carol", "replay.cancel"),
        ("carol", "replay.start"),
        ("dave", "replay.start"),
        ("dave", "replay.start"),
        ("dave", "replay.start"),
    ]
    assert all(set(e) == {"id", "at", "actor", "action", "reason", "params", "result"}
               for e in entries)  # fmt: skip
    discard = entries[-1]
    assert discard["reason"] == "not ours"
    assert discard["result"] == {"discarded": 1}
    assert len(discard["params"]["ids"]) == 1
    cancel = entries[-5]
    assert cancel["params"] == {"replay_id": world.replays["cancelled"]}
    assert cancel["reason"] == "wrong filter"
    started = entries[-3]
    assert started["result"] == {"replay_id": world.replays["done"], "total": 1}


def test_the_audit_trail_carries_no_credential(world: World) -> None:
    fingerprint = hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()[:12]
    text = world.client.get("/admin/audit", params={"limit": 500}).text
    assert ADMIN_TOKEN not in text
    assert fingerprint not in text
    assert "fingerprint" not in text


def test_the_audit_trail_filtered_by_action_and_actor(world: World) -> None:
    everything = _audit(world)
    cancels = _audit(world, action="replay.cancel")
    assert [e["action"] for e in cancels] == ["replay.cancel"]
    starts = _audit(world, action="replay.start", limit=1)
    assert starts == [e for e in everything if e["action"] == "replay.start"]
    assert len(starts) == 6
    assert _audit(world, actor="bob") == [e for e in everything if e["actor"] == "bob"]
    both = _audit(world, actor="dave", action="replay.start")
    assert [e["reason"] for e in both] == ["nothing 3", "nothing 2", "nothing 1"]
    assert _audit(world, action="replay") == [], "actions match whole, not as a prefix"
    assert _audit(world, actor="Bob") == [], "actors match exactly"


def test_the_audit_trail_filtered_by_time(world: World) -> None:
    everything = _audit(world)
    middle = everything[4]["at"]
    since = _audit(world, since=middle, limit=2)
    until = _audit(world, until=middle, limit=2)
    assert since == [e for e in everything if _at(e) >= datetime.fromisoformat(middle)]
    assert until == [e for e in everything if _at(e) < datetime.fromisoformat(middle)]
    assert since + until == everything, "since is inclusive, until exclusive"
    window = _audit(world, since=everything[-1]["at"], until=everything[0]["at"])
    assert window == everything[1:]
    assert _audit(world, since="2999-01-01T00:00:00Z") == []


def _at(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["at"])


# -- accounts ----------------------------------------------------------------------------


def test_accounts_in_id_order_across_pages(world: World) -> None:
    pages = _walk(world.client, "/admin/accounts", limit=4)
    _assert_pages(pages, 4)
    items = _flat(pages)
    assert world.stack.engine is not None
    with world.stack.engine.connect() as conn:
        in_order = list(conn.execute(sa.text("SELECT id FROM accounts ORDER BY id")).scalars())
    assert _ids(items) == in_order, "the database's id order, none twice, none missing"
    assert set(in_order) == {*PREFIXED, *OTHER_ACCOUNTS, "lst-notify"}
    notified = next(item for item in items if item["id"] == "lst-notify")
    shown = world.client.get("/admin/accounts/lst-notify").json()
    assert notified == {k: v for k, v in shown.items() if k != "pending_notifications"}
    assert notified["available"] == 350


def test_accounts_filtered_by_prefix(world: World) -> None:
    pages = _walk(world.client, "/admin/accounts", prefix="lst-a-", limit=3)
    assert [len(page) for page in pages] == [3, 3, 1]
    assert _ids(_flat(pages)) == PREFIXED
    only = _flat(_walk(world.client, "/admin/accounts", prefix="lst_a"))
    assert _ids(only) == ["lst_a_x"], "`_` is a character here, not a wildcard"
    assert _flat(_walk(world.client, "/admin/accounts", prefix="nobody")) == []
    after = _flat(_walk(world.client, "/admin/accounts", prefix="lst-a-", cursor="lst-a-004"))
    assert _ids(after) == PREFIXED[5:]


def test_an_accounts_notify_url_is_shown_masked_and_cannot_be_put_back(world: World) -> None:
    masked = f"{world.hook.url}?…"
    listed = _flat(_walk(world.client, "/admin/accounts", prefix="lst-notify"))
    assert [item["notify_url"] for item in listed] == [masked]
    shown = world.client.get("/admin/accounts/lst-notify")
    assert shown.json()["notify_url"] == masked
    assert NOTIFY_SECRET not in shown.text
    put_back = {"currency": "usd", "notify_url": shown.json()["notify_url"]}
    refused = world.client.put("/admin/accounts/lst-notify", json=put_back)
    assert refused.status_code == 400
    assert refused.json()["field"] == "notify_url"
    assert world.stack.engine is not None
    with world.stack.engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT notify_url FROM accounts WHERE id = 'lst-notify'")
        ).scalar_one()
    assert stored == f"{world.hook.url}?token={NOTIFY_SECRET}", "the real URL is kept"


# -- notification attempts ---------------------------------------------------------------


def test_notification_attempts_newest_first_with_the_secret_masked(world: World) -> None:
    path = "/admin/accounts/lst-notify/notification-attempts"
    pages = _walk(world.client, path, limit=1)
    assert [len(page) for page in pages] == [1, 1, 1]
    attempts = _flat(pages)
    ids = _ids(attempts)
    assert ids == sorted(set(ids), reverse=True)
    assert sorted(a["status"] for a in attempts) == [204, 204, 500]
    assert len({a["outbox_id"] for a in attempts}) == 2
    assert {a["kind"] for a in attempts} == {"balance.updated"}
    assert {a["outbox_state"] for a in attempts} == {"delivered"}
    assert {a["url"] for a in attempts} == {f"{world.hook.url}?…"}
    assert all(a["error"] is None and a["duration_ms"] >= 0 and a["attempted_at"]
               for a in attempts)  # fmt: skip
    failed = next(a for a in attempts if a["status"] == 500)
    retried = [a for a in attempts if a["outbox_id"] == failed["outbox_id"]]
    assert [a["status"] for a in retried] == [204, 500], "the retry is newer than the failure"
    text = world.client.get(path).text
    assert NOTIFY_SECRET not in text
    webhook_ids = {int(r.headers["Webhook-Id"]) for r in world.hook.received}
    assert webhook_ids == {a["outbox_id"] for a in attempts}


def test_notification_attempts_of_an_account_without_any(world: World) -> None:
    response = world.client.get("/admin/accounts/lst-quiet/notification-attempts")
    assert response.json() == {"items": [], "next_cursor": None}


def test_notification_attempts_of_an_unknown_account_are_404(world: World) -> None:
    response = world.client.get("/admin/accounts/lst-nobody/notification-attempts")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == PROBLEM
    assert response.json()["detail"] == "no account 'lst-nobody'"


# -- bad input ---------------------------------------------------------------------------

LISTS = [
    "/admin/replays",
    "/admin/audit",
    "/admin/accounts",
    "/admin/accounts/lst-notify/notification-attempts",
]
BAD_FOR_EVERY_LIST = [
    "limit=0",
    "limit=501",
    "limit=ten",
    "limit=",
    "limit=%2B5",
    "limit=1&limit=2",
    "cursor=%FF",
    "cursor=%00",
    "sorce=stripe",
    "%FF=1",
]
BAD_FOR_ONE = {
    "/admin/replays": ["state=finished", "state=", "state=%00", "cursor=-1", "cursor=1x"],
    "/admin/audit": [
        "action=",
        "action=%00",
        "action=%FFdiscard",
        "actor=" + "x" * 257,
        "since=yesterday",
        "since=2026-01-01",
        "until=2026-01-01T00:00:00",
        "since=0001-01-01T00:00:00%2B01:00",
        "cursor=99999999999999999999",
    ],
    "/admin/accounts": ["prefix=", "prefix=a%20b", "prefix=a%00", "prefix=%FF", "cursor=a/b"],
    "/admin/accounts/lst-notify/notification-attempts": ["cursor=-1", "state=running"],
}


@pytest.mark.parametrize(
    ("path", "query"),
    [(path, query) for path in LISTS for query in BAD_FOR_EVERY_LIST]
    + [(path, query) for path, queries in BAD_FOR_ONE.items() for query in queries],
)
def test_bad_input_is_a_400_problem(world: World, path: str, query: str) -> None:
    response = world.client.get(httpx.URL(f"{world.stack.url}{path}?{query}"))
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == PROBLEM
    assert response.json()["status"] == 400


def test_a_bad_account_id_is_a_400_problem(world: World) -> None:
    response = world.client.get("/admin/accounts/not%20an%20id/notification-attempts")
    assert response.status_code == 400
    assert response.headers["Content-Type"] == PROBLEM


def test_the_lists_only_read(world: World) -> None:
    for path in LISTS:
        response = world.client.post(path, json={})
        assert response.status_code == 405, path
        assert response.headers["Allow"] == "GET"
