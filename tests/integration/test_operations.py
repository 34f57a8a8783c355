"""The operators' story on the real stack: inspect, replay, cancel, discard, audit."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from common.envelope import PushEnvelope
from common.errors import TransientError
from tests.support.postgres import TestServer
from tests.support.stack import (
    admin,
    fast_topology,
    running_stack,
    signed_stripe,
    stripe_event,
    wait_for,
)


def _send(client: httpx.Client, event_id: str, account: str, amount: int) -> None:
    body = stripe_event(event_id, "payment_intent.succeeded", account, amount_received=amount)
    assert (
        client.post("/webhooks/stripe", content=body, headers=signed_stripe(body)).status_code
        == 202
    )


def _finished(client: httpx.Client, replay_id: int) -> dict[str, object]:
    def done() -> dict[str, object] | None:
        replay: dict[str, object] = client.get(f"/admin/replays/{replay_id}").json()
        return replay if replay["state"] != "running" else None

    return wait_for(done, timeout=60)  # type: ignore[no-any-return]


def test_replay_after_the_cause_is_fixed_applies_once_and_is_audited(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path
) -> None:
    with (
        running_stack(pg_server, database, tmp_path) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=60)) as client,
    ):
        client.headers["X-Hookyard-Operator"] = "alice"
        for i, amount in enumerate([100, 200, 300]):
            _send(client, f"evt_late_{i}", "acct_late", amount)
        dead = wait_for(lambda: len(items := client.get(
            "/admin/dead-letters", params={"source": "stripe", "reason": "UNKNOWN ACCOUNT"}
        ).json()["items"]) == 3 and items)  # fmt: skip
        assert {d["state"] for d in dead} == {"pending"}
        detail = client.get(f"/admin/dead-letters/{dead[0]['id']}").json()
        assert detail["data_json"]["data"]["object"]["metadata"]["account_id"] == "acct_late"

        dry = client.post("/admin/dead-letters/replay", json={
            "filter": {"source": "stripe"}, "dry_run": True, "reason": "checking"})  # fmt: skip
        assert dry.json() == {"dry_run": True, "total": 3}
        assert client.put("/admin/accounts/acct_late", json={"currency": "usd"}).status_code == 201
        replay_body = {"filter": {"source": "stripe"}, "reason": "account created"}
        started = client.post(
            "/admin/dead-letters/replay", json={**replay_body, "max_per_second": 50}
        )
        assert started.status_code == 202
        replay = _finished(client, started.json()["replay_id"])
        assert (replay["state"], replay["total"], replay["done"], replay["failed"]) == (
            "done",
            3,
            3,
            0,
        )
        wait_for(lambda: client.get("/admin/accounts/acct_late").json()["available"] == 600)

        again = client.post("/admin/dead-letters/replay", json={
            "filter": {"source": "stripe"}, "reason": "account created"})  # fmt: skip
        assert again.json()["total"] == 0
        time.sleep(0.5)
        assert client.get("/admin/accounts/acct_late").json()["available"] == 600
        states = {d["state"] for d in client.get("/admin/dead-letters").json()["items"]}
        assert states == {"replayed"}
        event = client.get("/admin/events/stripe/evt_late_0").json()
        assert event["outcome"] == "applied"
        assert event["transactions"][0]["kind"] == "payment"
    with engine.connect() as conn:
        query = "SELECT actor, action, reason, result FROM operator_actions ORDER BY id"
        actions = conn.execute(sa.text(query)).all()
    assert [(a.actor, a.action, a.reason) for a in actions] == [
        ("alice", "replay.dry-run", "checking"),
        ("alice", "replay.start", "account created"),
        ("alice", "replay.start", "account created"),
    ]
    assert actions[1].result["total"] == 3
    assert actions[2].result["total"] == 0


def test_transient_failures_show_the_last_error_and_a_failed_replay_links_back(
    pg_server: TestServer, database: str, tmp_path: Path
) -> None:
    def always_fail(envelope: PushEnvelope) -> None:
        if envelope.short_subscription == "ledger":
            raise TransientError("ledger database is read-only")

    with (
        running_stack(pg_server, database, tmp_path, topology=fast_topology(5),
                      worker_hook=always_fail) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=60)) as client,
    ):  # fmt: skip
        client.put("/admin/accounts/acct_t", json={"currency": "usd"})
        _send(client, "evt_t", "acct_t", 5)
        [dead] = wait_for(lambda: client.get("/admin/dead-letters").json()["items"], timeout=60)
        shown = client.get(f"/admin/dead-letters/{dead['id']}").json()
        assert shown["delivery_count"] == 5
        assert shown["origin"] == "broker"
        assert shown["error_class"] == "TransientError"
        assert "read-only" in shown["reason"]
        started = client.post("/admin/dead-letters/replay", json={
            "ids": [dead["id"]], "reason": "retry after fix"}).json()  # fmt: skip
        assert _finished(client, started["replay_id"])["done"] == 1
        second = wait_for(lambda: [d for d in client.get("/admin/dead-letters").json()["items"]
                                   if d["replay_of"] == dead["id"]], timeout=60)  # fmt: skip
        assert second[0]["state"] == "pending"
        assert second[0]["event_id"] == "evt_t"


# At 5/s these take two minutes to replay: the cancel comes first however slowly we run.
SEEDED = 600


def test_cancel_stops_promptly_and_leaves_the_rest_pending(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path
) -> None:
    with (
        running_stack(pg_server, database, tmp_path) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=60)) as client,
    ):
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO dead_letters (origin, subscription, message_id, source, event_id, "
                "event_type, data, attributes, error_message) "
                "SELECT 'worker', 'ledger', 'm' || n, 'stripe', 'evt_c' || n, 'customer.created', "
                """convert_to('{"type":"customer.created"}', 'UTF8'), """
                "jsonb_build_object('source', 'stripe', 'event_id', 'evt_c' || n), 'seeded' "
                "FROM generate_series(1, :n) AS n"), {"n": SEEDED})  # fmt: skip
        slow = {"filter": {"reason": "seeded"}, "reason": "slow one", "max_per_second": 5}
        started = client.post("/admin/dead-letters/replay", json=slow).json()
        wait_for(lambda: client.get(f"/admin/replays/{started['replay_id']}").json()["done"] >= 5)
        cancelled = client.post(f"/admin/replays/{started['replay_id']}/cancel",
                                json={"reason": "wrong filter"}).json()  # fmt: skip
        assert cancelled["state"] == "cancelled"
        time.sleep(1.5)  # a batch that was already scheduled must not run
        final = client.get(f"/admin/replays/{started['replay_id']}").json()
        assert final["done"] == cancelled["done"] < SEEDED
        stats = client.get("/admin/stats").json()
        assert stats["dead_letters"]["by_state"]["pending"] == SEEDED - final["done"]
        assert "ledger" in stats["subscriptions"]
        discarded = client.post("/admin/dead-letters/discard", json={
            "filter": {"reason": "seeded"}, "reason": "test data"}).json()  # fmt: skip
        assert discarded == {"discarded": SEEDED - final["done"]}
        bad = client.post("/admin/dead-letters/discard", json={"filter": {}})
        assert bad.status_code == 400
        assert bad.json()["field"] == "reason"


def test_a_named_id_that_does_not_exist_changes_nothing(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path
) -> None:
    """Replay (dry or not) and discard naming an unknown id are a 404 naming it, and the
    known ids beside it stay as they were: no state change, no replay, no audit entry."""
    with (
        running_stack(pg_server, database, tmp_path) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=60)) as client,
    ):
        _send(client, "evt_typo_0", "acct_typo", 100)
        [dead] = wait_for(lambda: client.get("/admin/dead-letters").json()["items"])
        unknown = dead["id"] + 1000
        for path, extra in [
            ("replay", {"dry_run": True}), ("replay", {}), ("discard", {}),
        ]:  # fmt: skip
            body = {"ids": [dead["id"], unknown], "reason": "typo", **extra}
            refused = client.post(f"/admin/dead-letters/{path}", json=body)
            assert refused.status_code == 404, refused.text
            problem = refused.json()
            assert problem["ids"] == [unknown]
            assert str(unknown) in problem["detail"]
        assert client.get(f"/admin/dead-letters/{dead['id']}").json()["state"] == "pending"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM operator_actions")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM replays")).scalar_one() == 0
