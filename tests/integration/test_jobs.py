"""Scheduled jobs on real PostgreSQL, driven through the `jobs` task contract."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from common.db import accounts, dead_letters, inbox, ledger, outbox, statements
from common.db.inbox import EventKey
from common.db.ledger import Posting
from common.db.reconciliations import last_reconciliation
from common.errors import PermanentError
from common.job_tasks import job_task
from common.messaging.tasks import TaskRequest, valid_task_id
from common.outbox_relay import OutboxRelay
from common.topology import load_topology
from workers.jobs import JobRunner, StatementWriter, statement_task_name
from workers.ledger import postings as rules

pytestmark = pytest.mark.integration

TICK = datetime(2026, 3, 10, 0, 5, tzinfo=UTC)  # writes 2026-03-09
NEXT_TICK = TICK + timedelta(days=1)  # writes 2026-03-10


class RecordingQueue:
    """Our `TaskQueue` interface with Cloud Tasks' naming rule: a known name is refused."""

    def __init__(self) -> None:
        self.tasks: dict[str, TaskRequest] = {}

    def enqueue(self, task: TaskRequest) -> bool:
        assert task.name is not None
        assert valid_task_id(task.name), task.name
        if task.name in self.tasks:
            return False
        self.tasks[task.name] = task
        return True


def make_runner(engine: Engine, queue: RecordingQueue, **kwargs: int) -> JobRunner:
    relay = OutboxRelay(engine, queue)
    return JobRunner(engine, load_topology(), queue, relay, **kwargs)


def run(runner: JobRunner, job: str, when: datetime) -> None:
    runner(job_task(job, when).body)


def add_account(engine: Engine, account_id: str, created: datetime) -> None:
    with engine.begin() as conn:
        assert accounts.create(conn, account_id, "usd", None) is not None
        conn.execute(
            sa.text("UPDATE accounts SET created_at = :at WHERE id = :id"),
            {"at": created, "id": account_id},
        )


def post(
    engine: Engine, event_id: str, account_id: str, lines: Sequence[Posting], at: datetime
) -> int:
    """What the ledger worker does for one applied event, with a chosen timestamp."""
    key = EventKey("stripe", event_id)
    with engine.begin() as conn:
        claimed = inbox.claim(
            conn, key, event_type="t", subscription="ledger", message_id=None, body_sha256=b""
        )
        assert claimed is inbox.Claim.FIRST
        tx_id = ledger.record(
            conn,
            account_id=account_id,
            kind="test",
            currency="usd",
            cause=key,
            subscription="ledger",
            postings=lines,
        )
        accounts.apply_delta(
            conn, account_id, "usd",
            available=sum(p.amount for p in lines if p.ledger_account.endswith(":available")),
            held=sum(p.amount for p in lines if p.ledger_account.endswith(":held")),
        )  # fmt: skip
        conn.execute(
            sa.text("UPDATE ledger_transactions SET created_at = :at WHERE id = :id"),
            {"at": at, "id": tx_id},
        )
        conn.execute(
            sa.text("UPDATE inbox SET processed_at = :at WHERE event_id = :id"),
            {"at": at, "id": event_id},
        )
    return tx_id


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    """`acct` and `x.y` (an id task names cannot hold verbatim), `late` opened after both
    statement days; postings either side of each day's end."""
    old = datetime(2026, 1, 1, tzinfo=UTC)
    add_account(engine, "acct", old)
    add_account(engine, "x.y", old)
    add_account(engine, "late", datetime(2026, 3, 12, tzinfo=UTC))
    post(engine, "e1", "acct", rules.payment("acct", 1000), datetime(2026, 3, 8, 10, tzinfo=UTC))
    post(
        engine, "e2", "acct", rules.hold("acct", 300), datetime(2026, 3, 9, 23, 59, 59, tzinfo=UTC)
    )
    # Exactly at the end of 2026-03-09: belongs to the next day.
    post(engine, "e3", "acct", rules.payment("acct", 500), datetime(2026, 3, 10, tzinfo=UTC))
    post(engine, "e4", "x.y", rules.payment("x.y", 70), datetime(2026, 3, 9, 12, tzinfo=UTC))
    post(engine, "e5", "x.y", rules.payout("x.y", 20), datetime(2026, 3, 10, 9, tzinfo=UTC))
    return engine


def write_statements(engine: Engine, queue: RecordingQueue) -> None:
    writer = StatementWriter(engine)
    for task in queue.tasks.values():
        assert task.queue == "statements"
        writer(task.body)


def balances(engine: Engine, day: date) -> dict[str, tuple[int, int]]:
    with engine.connect() as conn:
        return {b.account_id: (b.available, b.held) for b in statements.for_date(conn, day)}


def test_daily_balances_fans_out_once_and_writes_closing_balances(seeded: Engine) -> None:
    queue = RecordingQueue()
    runner = make_runner(seeded, queue, batch=1)  # one account per page: keyset paging
    run(runner, "daily-balances", TICK)
    assert runner.daily_balances(TICK).created == 0  # the duplicate tick creates nothing
    assert sorted(queue.tasks) == [
        "daily-balances-20260309-acct",
        statement_task_name(date(2026, 3, 9), "x.y"),
    ]
    bodies = sorted((json.loads(t.body) for t in queue.tasks.values()), key=str)
    assert bodies == [
        {"date": "2026-03-09", "account_id": "acct"},
        {"date": "2026-03-09", "account_id": "x.y"},
    ]

    write_statements(seeded, queue)
    write_statements(seeded, queue)  # a redelivered task rewrites the same row
    with seeded.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM daily_balances")).scalar_one()
    assert count == 2
    assert balances(seeded, date(2026, 3, 9)) == {"acct": (700, 300), "x.y": (70, 0)}


def test_two_days_give_two_sets_of_rows(seeded: Engine) -> None:
    queue = RecordingQueue()
    runner = make_runner(seeded, queue)
    run(runner, "daily-balances", TICK)
    run(runner, "daily-balances", NEXT_TICK)
    assert len(queue.tasks) == 4
    write_statements(seeded, queue)
    assert balances(seeded, date(2026, 3, 9)) == {"acct": (700, 300), "x.y": (70, 0)}
    assert balances(seeded, date(2026, 3, 10)) == {"acct": (1200, 300), "x.y": (50, 0)}


def test_task_names_stay_valid_and_distinct() -> None:
    day = date(2026, 3, 9)
    dotted, underscored = statement_task_name(day, "a.b"), statement_task_name(day, "a_b")
    assert dotted != underscored
    assert valid_task_id(dotted)
    assert underscored == "daily-balances-20260309-a_b"
    assert statement_task_name(day, "a.b") == dotted  # deterministic across runs
    assert valid_task_id(statement_task_name(day, "." * 128))


def test_statement_writer_rejects_bad_tasks(engine: Engine) -> None:
    writer = StatementWriter(engine)
    with pytest.raises(PermanentError):
        writer(b'{"date": "2026-03-09"}')
    with pytest.raises(PermanentError):
        writer(b'{"date": "2026-03-09", "account_id": "nobody"}')


def test_reconcile_records_clean_then_corrupted_ledger(seeded: Engine) -> None:
    runner = make_runner(seeded, RecordingQueue())
    with seeded.connect() as conn:
        assert last_reconciliation(conn) is None
    run(runner, "reconcile", TICK)
    with seeded.connect() as conn:
        clean = last_reconciliation(conn)
    assert clean is not None
    assert clean["ok"] is True
    assert clean["problem_count"] == 0

    with seeded.begin() as conn:
        tx_id = conn.execute(
            sa.text(
                "UPDATE postings SET amount = amount + 1 WHERE id = (SELECT min(id) FROM postings"
                " WHERE ledger_account = 'account:acct:available') RETURNING transaction_id"
            )
        ).scalar_one()
        conn.execute(sa.text("UPDATE accounts SET held = -5 WHERE id = 'x.y'"))
    run(runner, "reconcile", NEXT_TICK)  # a finding, not a failure: no exception
    with seeded.connect() as conn:
        found = last_reconciliation(conn)
    assert found is not None
    assert found["ok"] is False
    assert found["schedule_time"] == NEXT_TICK.isoformat()
    problems = found["problems"]
    assert {"check": "transaction_balance", "transaction_id": tx_id, "sum": 1} in problems
    assert {
        "check": "account_balance", "account_id": "acct",
        "available": 1200, "posted_available": 1201, "held": 300, "posted_held": 300,
    } in problems  # fmt: skip
    assert {"check": "held_non_negative", "account_id": "x.y", "held": -5} in problems
    assert found["problem_count"] == 4  # x.y's held also differs from its postings


def _old_rows(engine: Engine, now: datetime) -> dict[str, int]:
    """Rows of every kind on both sides of a 30-day cutoff; returns ids to check later."""
    old, recent = now - timedelta(days=40), now - timedelta(days=5)
    add_account(engine, "acct", old)
    post(engine, "applied-old", "acct", rules.payment("acct", 10), old)
    ids: dict[str, int] = {}
    with engine.begin() as conn:
        for event_id, at in (("ignored-old", old), ("ignored-recent", recent)):
            key = EventKey("stripe", event_id)
            inbox.claim(
                conn, key, event_type="t", subscription="ledger", message_id=None, body_sha256=b""
            )
            inbox.mark_ignored(conn, key, subscription="ledger")
            conn.execute(
                sa.text("UPDATE inbox SET processed_at = :at WHERE event_id = :id"),
                {"at": at, "id": event_id},
            )
        for name, state, at in (
            ("delivered-old", "delivered", old), ("skipped-old", "skipped", old),
            ("pending-old", "pending", old), ("failed-old", "failed", old),
            ("delivered-recent", "delivered", recent),
        ):  # fmt: skip
            ids[name] = outbox.add(conn, "acct", "test", {})
            conn.execute(
                sa.text("UPDATE outbox SET state = :state, created_at = :at WHERE id = :id"),
                {"state": state, "at": at, "id": ids[name]},
            )
            for _ in range(2):
                conn.execute(
                    sa.text(
                        "INSERT INTO notification_attempts (outbox_id, url, duration_ms)"
                        " VALUES (:id, 'http://r', 1)"
                    ),
                    {"id": ids[name]},
                )
        ids["dead-letter"] = dead_letters.record(
            conn, origin="worker", subscription="ledger", message_id="m1", data=b"{}",
            attributes={}, delivery_count=5, error_class="E", error_message="boom",
            first_failed_at=old,
        )  # fmt: skip
        conn.execute(sa.text("UPDATE dead_letters SET last_failed_at = :at"), {"at": old})
        for message_id, at in (("df-old", old), ("df-recent", recent)):
            conn.execute(
                sa.text(
                    "INSERT INTO delivery_failures (subscription, message_id, error_class,"
                    " error_message, first_failed_at, last_failed_at)"
                    " VALUES ('ledger', :m, 'E', 'x', :at, :at)"
                ),
                {"m": message_id, "at": at},
            )
    return ids


def _column(engine: Engine, sql: str) -> set[object]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text(sql)).scalars())


def test_retention_deletes_only_old_settled_rows(engine: Engine) -> None:
    now = datetime.now(UTC)
    ids = _old_rows(engine, now)
    runner = make_runner(engine, RecordingQueue(), retention_days=30)
    run(runner, "retention", now)

    assert _column(engine, "SELECT event_id FROM inbox") == {"applied-old", "ignored-recent"}
    kept = {ids[n] for n in ("pending-old", "failed-old", "delivered-recent")}
    assert _column(engine, "SELECT id FROM outbox") == kept
    assert _column(engine, "SELECT outbox_id FROM notification_attempts") == kept
    assert _column(engine, "SELECT message_id FROM delivery_failures") == {"df-recent"}
    assert _column(engine, "SELECT state FROM dead_letters") == {"pending"}
    assert _column(engine, "SELECT count(*) FROM ledger_transactions") == {1}
    assert _column(engine, "SELECT count(*) FROM postings") == {2}


def test_retention_runs_in_bounded_batches(engine: Engine) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for n in range(5):
            key = EventKey("stripe", f"ignored-{n}")
            inbox.claim(
                conn, key, event_type="t", subscription="ledger", message_id=None, body_sha256=b""
            )
            inbox.mark_ignored(conn, key, subscription="ledger")
        conn.execute(
            sa.text("UPDATE inbox SET processed_at = :at"), {"at": now - timedelta(days=31)}
        )
    runner = make_runner(engine, RecordingQueue(), retention_days=30, batch=2)
    report = runner.retention(now)
    assert report.deleted["inbox"] == 5
    assert report.batches["inbox"] == 3  # 2 + 2 + 1, and the short batch ends the loop
    assert report.batches["outbox"] == 1
    assert _column(engine, "SELECT count(*) FROM inbox") == {0}


def test_outbox_relay_sweeps_unenqueued_rows(engine: Engine) -> None:
    add_account(engine, "acct", datetime(2026, 1, 1, tzinfo=UTC))
    with engine.begin() as conn:
        stale, fresh = outbox.add(conn, "acct", "test", {}), outbox.add(conn, "acct", "test", {})
        conn.execute(
            sa.text("UPDATE outbox SET created_at = now() - interval '5 minutes' WHERE id = :id"),
            {"id": stale},
        )
    queue = RecordingQueue()
    run(make_runner(engine, queue), "outbox-relay", datetime.now(UTC))
    assert list(queue.tasks) == [f"outbox-{stale}"]
    assert fresh != stale


def test_unknown_job_is_permanent(engine: Engine) -> None:
    runner = make_runner(engine, RecordingQueue())
    with pytest.raises(PermanentError):
        run(runner, "nope", TICK)
    with pytest.raises(PermanentError):
        runner(b"not json")
