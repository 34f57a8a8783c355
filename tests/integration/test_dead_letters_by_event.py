"""Dead letters are problems, not messages: failures of one event and error fold into one
pending row with a count; messages without an event stay one row each; a failure after an
operator acted on its row is a new pending row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine

from common.db import dead_letters, migrate, replays
from common.db.dead_letters import REPLAY_OF, DeadLetter, Selection
from tests.support.postgres import TestServer
from tests.support.stack import admin, running_stack, signed_stripe, stripe_event, wait_for

STORM = 50


def _fail(
    engine: Engine,
    message_id: str,
    *,
    event_id: str | None = "evt_storm",
    error_class: str = "UnknownAccount",
    data: bytes = b'{"id":"evt_storm"}',
    extra: dict[str, str] | None = None,
) -> int:
    attributes = {"source": "stripe", "event_id": event_id} if event_id else {}
    with engine.begin() as conn:
        return dead_letters.record(
            conn,
            origin="worker",
            subscription="ledger",
            message_id=message_id,
            data=data,
            attributes={**attributes, "event_type": "payment_intent.succeeded", **(extra or {})},
            delivery_count=1,
            error_class=error_class,
            error_message=f"{error_class}: unknown account 'acct_storm'",
        )


def _rows(engine: Engine, **selection: Any) -> list[DeadLetter]:
    with engine.connect() as conn:
        return dead_letters.list_page(conn, Selection(**selection), limit=500)


def _get(engine: Engine, dead_letter_id: int) -> DeadLetter:
    with engine.connect() as conn:
        row = dead_letters.get(conn, dead_letter_id)
    assert row is not None
    return row


def test_a_storm_of_one_event_is_one_row_that_counts_and_keeps_the_latest_message(
    engine: Engine,
) -> None:
    first_id = _fail(engine, "m1", data=b"body 1")
    first = _get(engine, first_id)
    ids = {_fail(engine, f"m{n}", data=f"body {n}".encode()) for n in range(2, STORM + 1)}

    assert ids == {first_id}
    [row] = _rows(engine)
    assert row.failure_count == STORM
    assert row.state == "pending"
    assert row.first_failed_at == first.first_failed_at
    assert row.last_failed_at > first.last_failed_at
    assert (row.message_id, row.data) == (f"m{STORM}", f"body {STORM}".encode())
    with engine.connect() as conn:
        stats = dead_letters.stats(conn)
    assert stats["by_state"] == {"pending": 1}
    assert stats["failures_by_state"] == {"pending": STORM}
    assert [(r["count"], r["failures"]) for r in stats["by_reason"]] == [(1, STORM)]


def test_another_error_class_or_event_is_another_row(engine: Engine) -> None:
    storm = _fail(engine, "m1")
    assert _fail(engine, "m2") == storm
    other_reason = _fail(engine, "m3", error_class="CurrencyMismatch")
    other_event = _fail(engine, "m4", event_id="evt_other")
    assert len({storm, other_reason, other_event}) == 3
    counts = {row.id: row.failure_count for row in _rows(engine)}
    assert counts == {storm: 2, other_reason: 1, other_event: 1}


def test_messages_without_an_event_stay_one_row_per_message(engine: Engine) -> None:
    first = _fail(engine, "p1", event_id=None, data=b"\xff\xfe poison")
    again = _fail(engine, "p1", event_id=None, data=b"\xff\xfe poison")
    second = _fail(engine, "p2", event_id=None, data=b"\xff\xfe poison")
    assert first == again != second
    counts = {row.message_id: row.failure_count for row in _rows(engine)}
    assert counts == {"p1": 2, "p2": 1}


def test_a_failure_after_the_operator_acted_is_a_new_pending_row(engine: Engine) -> None:
    replayed = _fail(engine, "m1")
    with engine.begin() as conn:
        replay_id = replays.create(
            conn, max_per_second=10, reason="test", actor="test", selection={}
        )
        assert dead_letters.claim_for_replay(conn, Selection(ids=(replayed,)), replay_id) == 1

    # The replay has claimed the row but not republished it yet: a failure now must not
    # fold into a row the replay is about to mark replayed.
    while_replaying = _fail(engine, "m2")
    assert while_replaying != replayed
    with engine.begin() as conn:
        dead_letters.mark_replayed(conn, [replayed])

    # The replayed message fails again: linked to the row it came from, folded into the
    # event's pending row, and the replayed row is left as the replay's record.
    relapsed = _fail(engine, "m3", extra={REPLAY_OF: str(replayed)})
    assert relapsed == while_replaying
    assert _get(engine, relapsed).replay_of == replayed
    assert _get(engine, relapsed).failure_count == 2
    assert (_get(engine, replayed).state, _get(engine, replayed).failure_count) == ("replayed", 1)

    with engine.begin() as conn:
        assert dead_letters.discard(conn, Selection(ids=(relapsed,))) == 1
    after_discard = _fail(engine, "m4")
    assert after_discard not in {replayed, relapsed}
    states = {row.id: (row.state, row.failure_count) for row in _rows(engine)}
    assert states == {
        replayed: ("replayed", 1),
        relapsed: ("discarded", 2),
        after_discard: ("pending", 1),
    }


def test_poison_redelivered_after_a_discard_is_pending_again(engine: Engine) -> None:
    discarded = _fail(engine, "p1", event_id=None)
    with engine.begin() as conn:
        dead_letters.discard(conn, Selection(ids=(discarded,)))
    again = _fail(engine, "p1", event_id=None)
    assert again != discarded
    assert _get(engine, again).state == "pending"


# -- the migration --------------------------------------------------------------------------

_SEED = sa.text(
    "INSERT INTO dead_letters (origin, subscription, message_id, source, event_id, event_type, "
    "data, attributes, delivery_count, error_class, error_message, state, first_failed_at, "
    "last_failed_at, replay_of) "
    "VALUES ('worker', 'ledger', :message_id, :source, :event_id, 'payment_intent.succeeded', "
    "convert_to(:message_id, 'UTF8'), '{}', :delivery_count, :error_class, :message_id, :state, "
    "timestamptz '2026-01-01' + make_interval(mins => :minute), "
    "timestamptz '2026-01-01' + make_interval(mins => :minute), :replay_of) RETURNING id"
)


def _seed(conn: sa.Connection, message_id: str, minute: int, **values: Any) -> int:
    params = {
        "source": "stripe", "event_id": "evt_a", "delivery_count": 1,
        "error_class": "UnknownAccount", "state": "pending", "replay_of": None,
        "message_id": message_id, "minute": minute, **values,
    }  # fmt: skip
    return int(conn.execute(_SEED, params).scalar_one())


def _downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        cfg = migrate.alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def test_the_migration_folds_pending_duplicates_and_downgrades(pg_server: TestServer) -> None:
    name = pg_server.create_database(migrated=False)
    engine = pg_server.engine(name)
    try:
        migrate.upgrade(engine, "0005")
        with engine.begin() as conn:
            replayed = _seed(conn, "r1", 0, state="replayed")
            oldest = _seed(conn, "a1", 1, replay_of=replayed)
            _seed(conn, "a2", 3, delivery_count=7)
            latest = _seed(conn, "a3", 5)
            _seed(conn, "a4", 2)
            other_reason = _seed(conn, "b1", 4, error_class="CurrencyMismatch")
            poison = _seed(conn, "p1", 6, source=None, event_id=None)
            history = _seed(conn, "r2", 7, state="replayed")
            linked = _seed(conn, "c1", 8, event_id="evt_c", replay_of=latest)

        migrate.upgrade(engine)

        by_id = {row.id: row for row in _rows(engine)}
        assert set(by_id) == {replayed, oldest, other_reason, poison, history, linked}
        folded = by_id[oldest]
        assert folded.failure_count == 4
        assert (folded.message_id, folded.data) == ("a3", b"a3")
        assert folded.delivery_count == 7
        assert folded.replay_of == replayed
        assert folded.first_failed_at < by_id[other_reason].first_failed_at < folded.last_failed_at
        assert by_id[linked].replay_of == oldest  # pointed at a folded row, follows it
        assert {by_id[i].failure_count for i in (replayed, other_reason, poison, history)} == {1}
        assert _fail(engine, "a5", event_id="evt_a") == oldest  # the index is the identity
        with engine.begin() as conn:
            dead_letters.discard(conn, Selection(ids=(poison,)))
        poison_again = _fail(engine, "p1", event_id=None)

        _downgrade(engine, "0005")
        with engine.connect() as conn:
            kept = [
                tuple(r)
                for r in conn.execute(sa.text("SELECT id, message_id, state FROM dead_letters"))
            ]
            columns = {c["name"] for c in sa.inspect(conn).get_columns("dead_letters")}
            unique = sa.inspect(conn).get_unique_constraints("dead_letters")
        assert "failure_count" not in columns
        assert [u["column_names"] for u in unique] == [["subscription", "message_id"]]
        assert len(kept) == len({m for _, m, _ in kept}) == 6
        assert (poison_again, "p1", "pending") in kept  # the pending one of a message survives
        migrate.upgrade(engine)
        assert migrate.is_current(engine)
    finally:
        engine.dispose()
        pg_server.drop_database(name)


# -- through the real stack ------------------------------------------------------------------

SENDER_RETRIES = 12


def test_a_senders_retry_storm_is_one_dead_letter_and_replays_once(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path
) -> None:
    body = stripe_event("evt_storm", "payment_intent.succeeded", "acct_storm", amount_received=700)

    def send(client: httpx.Client) -> None:
        response = client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))
        assert response.status_code == 202

    def pending(client: httpx.Client, failures: int) -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = client.get(
            "/admin/dead-letters", params={"state": "pending"}
        ).json()["items"]
        return items if sum(i["failure_count"] for i in items) == failures else None

    def replay(client: httpx.Client, dead_letter_id: int) -> None:
        started = client.post("/admin/dead-letters/replay", json={
            "ids": [dead_letter_id], "reason": "test"}).json()  # fmt: skip
        wait_for(lambda: client.get(f"/admin/replays/{started['replay_id']}").json()["state"]
                 == "done", timeout=60)  # fmt: skip

    with (
        running_stack(pg_server, database, tmp_path) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=60)) as client,
    ):
        for _ in range(SENDER_RETRIES):
            send(client)
        [storm] = wait_for(lambda: pending(client, SENDER_RETRIES), timeout=120)
        assert (storm["event_id"], storm["failure_count"]) == ("evt_storm", SENDER_RETRIES)
        assert client.get("/admin/stats").json()["dead_letters"]["by_state"] == {"pending": 1}

        # Replayed before the account exists: it fails again, as a new pending problem.
        replay(client, storm["id"])
        [relapse] = wait_for(lambda: pending(client, 1), timeout=120)
        assert relapse["id"] != storm["id"]
        assert relapse["replay_of"] == storm["id"]
        send(client)  # the sender is still retrying: folds into the pending row
        [relapse] = wait_for(lambda: pending(client, 2), timeout=120)
        assert relapse["replay_of"] == storm["id"]
        shown = client.get(f"/admin/dead-letters/{storm['id']}").json()
        assert (shown["state"], shown["failure_count"]) == ("replayed", SENDER_RETRIES)

        assert client.put("/admin/accounts/acct_storm", json={"currency": "usd"}).is_success
        replay(client, relapse["id"])
        wait_for(lambda: client.get("/admin/accounts/acct_storm").json()["available"] == 700)
    with engine.connect() as conn:
        counts = conn.execute(
            sa.text("SELECT state, count(*), sum(failure_count) FROM dead_letters GROUP BY 1")
        ).all()
        postings = conn.execute(
            sa.text("SELECT count(*) FROM ledger_transactions WHERE event_id = 'evt_storm'")
        ).scalar_one()
    assert {state: (int(n), int(f)) for state, n, f in counts} == {
        "replayed": (2, SENDER_RETRIES + 2)
    }
    assert postings == 1
