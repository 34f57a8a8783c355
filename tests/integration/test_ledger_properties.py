"""Whatever the broker does to delivery, the ledger ends as if each event applied once, in order.

Hypothesis draws a valid Stripe history for one account (payments, partial refunds, disputes
won, lost or still open, payouts, and events the ledger ignores) and a delivery plan: every
event delivered one to three times, shuffled, in batches that run concurrently on a thread
pool, redeliveries sometimes under a new message id. The real `Worker` applies them on real
PostgreSQL. A model broker redelivers whatever was nacked (`ServiceUnavailable`) until
everything is acked, as Pub/Sub would. So that a batch really races (its transactions
interleave rather than run one after another), its pushes start together at a barrier, on
connections already in the pool, and sleep a random moment before each SQL statement.

Then: the account's balances equal the reference model's (`tests.support.ledger_model`),
every ledger transaction sums to zero, each balance equals the sum of its postings, the inbox
holds exactly one row per event, nothing was dead-lettered and, for a notifiable account,
the last `balance.updated` outbox row carries the final balances.

Every scenario gets its own account and id namespace, so all examples share one database.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from common.db import accounts
from common.envelope import PushEnvelope, build_envelope, parse_envelope
from common.errors import ServiceUnavailable
from tests.support.ledger_model import (
    Balances,
    DisputeClosed,
    DisputeOpened,
    HistoryEvent,
    Payment,
    Payout,
    Refund,
    StripeEvent,
    Unrelated,
    apply_in_order,
    to_stripe,
)
from workers.ledger import postings
from workers.push import Worker

# A pass takes seconds; a failure lets Hypothesis shrink for up to its own 300 s cap first.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

CURRENCY = "usd"
MAX_EVENTS = 25
MAX_AMOUNT = 10_000
MAX_COPIES = 3
THREADS = 4
MAX_RETRY_ROUNDS = 20
BARRIER_TIMEOUT_S = 60.0
NOTIFY_URL = "http://127.0.0.1:9/hook"
JITTER_S = 0.002


# --- What hypothesis draws -------------------------------------------------------------------
#
# Each event comes from one `Step` of raw numbers, interpreted against the history so far, and
# carries its own pushes. So every drawn history is valid, and hypothesis shrinks a failure by
# deleting steps (events with their deliveries) and by lowering numbers: towards payments of 1,
# each pushed once, in order, one at a time.


@dataclass(frozen=True, slots=True)
class Push:
    """One copy of an event: `delay` after the previous copy (the first: after the start)."""

    delay: int
    overlaps_previous: bool
    """Runs concurrently with the push before it in the timeline (up to THREADS at once)."""
    new_message_id: bool
    """For a redelivery: republished under a new message id instead of redelivered as is."""


@dataclass(frozen=True, slots=True)
class Step:
    kind: int
    target: int
    amount: int
    won: bool
    pushes: list[Push]


push_strategy = st.builds(
    Push,
    delay=st.one_of(st.just(0), st.integers(0, 2 * MAX_EVENTS)),
    overlaps_previous=st.booleans(),
    new_message_id=st.booleans(),
)
step_strategy = st.builds(
    Step,
    kind=st.integers(0, 255),
    target=st.integers(0, 255),
    amount=st.integers(0, MAX_AMOUNT - 1),
    won=st.booleans(),
    pushes=st.lists(push_strategy, min_size=1, max_size=MAX_COPIES),
)


KINDS = (
    *("payment", "payment"),
    *("refund", "refund", "refund"),
    *("dispute", "close", "close"),
    *("payout", "other"),
)
"""What a step's `kind` picks (repeats weight the draw); one not possible yet is a payment."""


def history_from(steps: Sequence[Step]) -> list[HistoryEvent]:
    """A history Stripe could send for one account.

    Refunds of a charge grow strictly and never exceed what it paid, a charge is disputed at
    most once for at most its amount, a dispute closes once and only after it opened, and a
    payout never takes more than the available balance. A step means the same thing when
    hypothesis deletes unrelated steps before it: its kind comes from a fixed table and its
    `target` counts back from the newest candidate.
    """
    history: list[HistoryEvent] = []
    paid: dict[str, int] = {}
    refunded: dict[str, int] = {}
    disputed_charges: set[str] = set()
    open_disputes: dict[str, DisputeOpened] = {}
    for n, step in enumerate(steps):
        event_id = f"evt_{n}"
        refundable = [c for c in reversed(paid) if refunded.get(c, 0) < paid[c]]
        undisputed = [c for c in reversed(paid) if c not in disputed_charges]
        closable = list(reversed(open_disputes))
        available = apply_in_order(history).available
        possible = {
            "refund": bool(refundable),
            "dispute": bool(undisputed),
            "close": bool(closable),
            "payout": available > 0,
        }
        kind = KINDS[step.kind % len(KINDS)]
        match kind if possible.get(kind, True) else "payment":
            case "payment":
                charge_id = f"ch_{n}"
                paid[charge_id] = 1 + step.amount
                history.append(Payment(event_id, charge_id, paid[charge_id]))
            case "refund":
                charge_id = refundable[step.target % len(refundable)]
                before = refunded.get(charge_id, 0)
                refunded[charge_id] = before + 1 + step.amount % (paid[charge_id] - before)
                history.append(Refund(event_id, charge_id, refunded[charge_id]))
            case "dispute":
                charge_id = undisputed[step.target % len(undisputed)]
                disputed_charges.add(charge_id)
                amount = 1 + step.amount % paid[charge_id]
                opened = DisputeOpened(event_id, f"dp_{n}", charge_id, amount)
                open_disputes[opened.dispute_id] = opened
                history.append(opened)
            case "close":
                opened = open_disputes.pop(closable[step.target % len(closable)])
                history.append(
                    DisputeClosed(
                        event_id, opened.dispute_id, opened.charge_id, opened.amount, step.won
                    )
                )
            case "payout":
                history.append(Payout(event_id, 1 + step.amount % min(available, MAX_AMOUNT)))
            case _:
                history.append(Unrelated(event_id))
    return history


@dataclass(frozen=True, slots=True)
class Delivery:
    """One push of one event: `copy` 0 is the first; later copies are redeliveries."""

    event_index: int
    copy: int
    new_message_id: bool = False


Batch = tuple[Delivery, ...]
"""Deliveries that run at the same time; a batch of one runs alone."""


def plan_from(steps: Sequence[Step]) -> list[Batch]:
    """Every push on one timeline (ties in history order), cut into concurrent batches."""
    timeline: list[tuple[int, int, int, Push]] = []
    for index, step in enumerate(steps):
        at = 0
        for copy, push in enumerate(step.pushes):
            at += push.delay
            timeline.append((at, index, copy, push))
    timeline.sort(key=lambda entry: entry[:3])
    batches: list[Batch] = []
    for _, index, copy, push in timeline:
        delivery = Delivery(index, copy, new_message_id=copy > 0 and push.new_message_id)
        if batches and push.overlaps_previous and len(batches[-1]) < THREADS:
            batches[-1] = (*batches[-1], delivery)
        else:
            batches.append((delivery,))
    return batches


@dataclass(frozen=True, slots=True)
class Scenario:
    history: list[HistoryEvent]
    plan: list[Batch]
    notifiable: bool

    def describe(self) -> str:
        """The history in order, then the pushes: `[a b]` overlap, `+` is a new message id."""

        def push(delivery: Delivery) -> str:
            event_id = self.history[delivery.event_index].event_id
            return f"{event_id}#{delivery.copy}{'+' * delivery.new_message_id}"

        lines = [f"notifiable={self.notifiable}", "history:"]
        lines += [f"  {event}" for event in self.history]
        lines.append("pushes: " + " ".join(f"[{' '.join(map(push, b))}]" for b in self.plan))
        return "\n".join(lines)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    # A drawn length rather than `st.lists`' short average: histories of 0..MAX_EVENTS alike.
    length = draw(st.integers(0, MAX_EVENTS))
    drawn = draw(st.lists(step_strategy, min_size=length, max_size=length))
    return Scenario(history_from(drawn), plan_from(drawn), notifiable=draw(st.booleans()))


# --- A broker that redelivers until everything is acked --------------------------------------

_racing = threading.local()
"""`active` while this thread runs a push of a concurrent batch (see `jittery_engine`)."""


@dataclass(frozen=True, slots=True)
class Message:
    event: StripeEvent
    message_id: str

    def envelope(self, attempt: int) -> PushEnvelope:
        raw = build_envelope(
            project="p",
            subscription="ledger",
            message_id=self.message_id,
            data=self.event.body,
            attributes={
                "source": "stripe",
                "event_id": self.event.event_id,
                "event_type": self.event.event_type,
            },
            publish_time=datetime.now(UTC),
            delivery_attempt=attempt,
        )
        return parse_envelope(json.dumps(raw).encode())


@dataclass
class Broker:
    """Pushes messages to the worker and redelivers every nack, as Pub/Sub does.

    A valid history causes no nack, whatever the order: a dispute closed before it was opened
    is recorded, not retried. Any nack (a deadlock, a unique violation) is collected in
    `unexpected_nacks`, because a retrying broker would otherwise hide it.
    """

    worker: Worker
    pool: ThreadPoolExecutor
    nacked_event_ids: list[str] = field(default_factory=list)
    unexpected_nacks: list[str] = field(default_factory=list)
    _attempts: Counter[str] = field(default_factory=Counter)

    def push_all(self, batches: Sequence[Sequence[Message]]) -> None:
        pending = [failed for batch in batches for failed in self._push_batch(batch)]
        for _ in range(MAX_RETRY_ROUNDS):
            if not pending:
                return
            retries = [pending[i : i + THREADS] for i in range(0, len(pending), THREADS)]
            pending = [failed for batch in retries for failed in self._push_batch(batch)]
        pytest.fail(
            f"{len(pending)} deliveries still nacked after {MAX_RETRY_ROUNDS} redelivery rounds: "
            f"{[m.event.event_id for m in pending]}; unexpected nacks: {self.unexpected_nacks}"
        )

    def _push_batch(self, batch: Sequence[Message]) -> list[Message]:
        """Runs the batch at once and returns the nacked messages."""
        envelopes = []
        for message in batch:
            self._attempts[message.message_id] += 1
            envelopes.append(message.envelope(self._attempts[message.message_id]))
        if len(batch) == 1:
            acked = [self._push(envelopes[0], None)]
        else:
            barrier = threading.Barrier(len(batch), timeout=BARRIER_TIMEOUT_S)
            futures = [self.pool.submit(self._push, env, barrier) for env in envelopes]
            acked = [future.result() for future in futures]
        return [message for message, ok in zip(batch, acked, strict=True) if not ok]

    def _push(self, envelope: PushEnvelope, barrier: threading.Barrier | None) -> bool:
        if barrier is not None:
            barrier.wait()
        _racing.active = barrier is not None
        try:
            self.worker.deliver("ledger", envelope)
        except ServiceUnavailable as nack:
            cause = nack.__cause__
            event_id = envelope.message.attributes["event_id"]
            self.nacked_event_ids.append(event_id)
            self.unexpected_nacks.append(f"{event_id}: {type(cause).__name__}: {cause}")
            return False
        finally:
            _racing.active = False
        return True


def messages_for(events: Sequence[StripeEvent], plan: Sequence[Batch]) -> list[list[Message]]:
    """Redeliveries keep the message id unless the plan says the publisher sent a new one."""

    def message(delivery: Delivery) -> Message:
        event = events[delivery.event_index]
        suffix = f"-{delivery.copy}" if delivery.new_message_id else ""
        return Message(event, f"m-{event.event_id}{suffix}")

    return [[message(delivery) for delivery in batch] for batch in plan]


# --- What must hold afterwards ---------------------------------------------------------------


def create_account(engine: Engine, notifiable: bool) -> str:
    account_id = f"acct_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        accounts.create(conn, account_id, CURRENCY, NOTIFY_URL if notifiable else None)
    return account_id


def assert_ledger_matches(
    engine: Engine, account_id: str, events: Sequence[StripeEvent], expected: Balances
) -> None:
    with engine.connect() as conn:
        account = accounts.get(conn, account_id)
        assert account is not None
        assert Balances(account.available, account.held) == expected

        unbalanced = conn.execute(
            sa.text(
                "SELECT transaction_id, sum(amount) FROM postings"
                " GROUP BY 1 HAVING sum(amount) <> 0"
            )
        ).all()
        assert unbalanced == []
        too_few_postings = conn.execute(
            sa.text(
                "SELECT t.id FROM ledger_transactions AS t"
                " LEFT JOIN postings AS p ON p.transaction_id = t.id"
                " GROUP BY t.id HAVING count(p.id) < 2"
            )
        ).all()
        assert too_few_postings == []

        posted: dict[str, int] = dict(
            conn.execute(
                sa.text(
                    "SELECT ledger_account, sum(amount) FROM postings"
                    " WHERE ledger_account IN (:available, :held) GROUP BY 1"
                ),
                {"available": postings.available(account_id), "held": postings.held(account_id)},
            ).all()
        )
        assert account.available == posted.get(postings.available(account_id), 0)
        assert account.held == posted.get(postings.held(account_id), 0)

        event_ids = [event.event_id for event in events]
        inbox_rows = conn.execute(
            sa.text(
                "SELECT event_id, count(*) FROM inbox"
                " WHERE source = 'stripe' AND event_id = ANY(:ids) GROUP BY 1"
            ),
            {"ids": event_ids},
        ).all()
        assert dict(inbox_rows) == dict.fromkeys(event_ids, 1)

        per_event = conn.execute(
            sa.text(
                "SELECT event_id, count(*) FROM ledger_transactions WHERE account_id = :id"
                " GROUP BY 1"
            ),
            {"id": account_id},
        ).all()
        assert all(count == 1 for _, count in per_event), per_event
        assert {event_id for event_id, _ in per_event} <= set(event_ids)

        assert conn.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar_one() == 0

        if account.notifications_enabled:
            announced = conn.execute(
                sa.text("SELECT payload FROM outbox WHERE account_id = :id ORDER BY id"),
                {"id": account_id},
            ).scalars()
            payloads = list(announced)
            assert len(payloads) == len(per_event)
            if payloads:
                final = Balances(payloads[-1]["available"], payloads[-1]["held"])
                assert final == expected


def run_scenario(
    engine: Engine, pool: ThreadPoolExecutor, scenario: Scenario
) -> tuple[Broker, list[StripeEvent]]:
    account_id = create_account(engine, scenario.notifiable)
    namespace = account_id.removeprefix("acct_")
    events = [to_stripe(event, account_id, namespace) for event in scenario.history]
    broker = Broker(Worker(engine), pool)
    broker.push_all(messages_for(events, scenario.plan))
    assert broker.unexpected_nacks == []
    assert_ledger_matches(engine, account_id, events, apply_in_order(scenario.history))
    return broker, events


@pytest.fixture
def jittery_engine(engine: Engine) -> Iterator[Engine]:
    """The test engine, with its pool warmed and a sleep of up to JITTER_S before each
    statement of a concurrent push.

    Without both, the push that gets the one pooled connection usually commits before its
    rivals have sent a statement, and races that need two transactions to interleave (both
    acting on one stale read) almost never happen.
    """

    def jitter(*_: object) -> None:
        if getattr(_racing, "active", False):
            time.sleep(random.uniform(0, JITTER_S))

    # Warm the pool: a push that has to open its connection starts far behind its rivals.
    warm = [engine.connect() for _ in range(THREADS)]
    for connection in warm:
        connection.close()
    sa.event.listen(engine, "before_cursor_execute", jitter)
    yield engine
    sa.event.remove(engine, "before_cursor_execute", jitter)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="push") as executor:
        yield executor


# --- The tests -------------------------------------------------------------------------------


@settings(
    max_examples=30,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios())
def test_any_delivery_of_a_valid_history_ends_in_its_in_order_balances(
    jittery_engine: Engine, pool: ThreadPoolExecutor, scenario: Scenario
) -> None:
    note(scenario.describe())
    run_scenario(jittery_engine, pool, scenario)


FIXED_HISTORY: list[HistoryEvent] = [
    Payment("evt_1", "ch_1", 1000),
    Payment("evt_2", "ch_2", 500),
    Refund("evt_3", "ch_1", 200),
    DisputeOpened("evt_4", "dp_1", "ch_2", 300),
    Refund("evt_5", "ch_1", 450),
    Payout("evt_6", 100),
    DisputeClosed("evt_7", "dp_1", "ch_2", 300, won=True),
    DisputeOpened("evt_8", "dp_2", "ch_1", 250),
    Unrelated("evt_9"),
    DisputeClosed("evt_10", "dp_2", "ch_1", 250, won=False),
    DisputeOpened("evt_11", "dp_3", "ch_2", 120),
]


def test_every_event_three_times_at_once_in_reverse_order(
    jittery_engine: Engine, pool: ThreadPoolExecutor
) -> None:
    """Last event first, each as three overlapping pushes: the original, the broker's
    redelivery of the same message and a republish under a new message id."""
    expected = Balances(available=1000 + 500 - 450 - 100 - 250 - 120, held=120)
    assert apply_in_order(FIXED_HISTORY) == expected
    plan: list[Batch] = [
        (Delivery(index, 0), Delivery(index, 1), Delivery(index, 2, new_message_id=True))
        for index in reversed(range(len(FIXED_HISTORY)))
    ]

    scenario = Scenario(FIXED_HISTORY, plan, notifiable=True)
    broker, events = run_scenario(jittery_engine, pool, scenario)

    closes = {
        event.event_id
        for event, source in zip(events, FIXED_HISTORY, strict=True)
        if isinstance(source, DisputeClosed)
    }
    # Both closes arrive before their disputes open and are recorded, not retried.
    assert broker.nacked_event_ids == []
    with jittery_engine.connect() as conn:
        closed_first = conn.execute(
            sa.text(
                "SELECT closed_by FROM disputes WHERE closed_by = ANY(:ids)"
                " AND closed_at < opened_at"
            ),
            {"ids": list(closes)},
        ).scalars()
        assert set(closed_first) == closes


def test_refunds_of_one_charge_racing_each_other_apply_only_the_growth(
    jittery_engine: Engine, pool: ThreadPoolExecutor
) -> None:
    """Distinct refund events of one charge at once, after a first refund made its row.

    Random plans rarely race two refunds of the same charge; this one always does. Unless the
    charge row serialises them, each applies its growth from the same stale base.
    """
    history: list[HistoryEvent] = [
        Payment("evt_1", "ch_1", 1000),
        Refund("evt_2", "ch_1", 100),
        Refund("evt_3", "ch_1", 300),
        Refund("evt_4", "ch_1", 500),
        Refund("evt_5", "ch_1", 700),
    ]
    plan: list[Batch] = [
        (Delivery(0, 0),),
        (Delivery(1, 0),),
        (Delivery(2, 0), Delivery(3, 0), Delivery(4, 0), Delivery(4, 1, new_message_id=True)),
    ]
    assert apply_in_order(history) == Balances(available=300, held=0)
    for _ in range(3):  # each run races on a fresh account
        run_scenario(jittery_engine, pool, Scenario(history, plan, notifiable=False))
