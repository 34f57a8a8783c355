"""The chaos run's own model of the ledger: what it expects must not depend on the order in
which events arrive, and must say what the issue's rules say for each kind of event."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.chaos.plan import ACCOUNTS, Effect, Event, expected, make_plan


def _event(event_id: str, effect: Effect, expect: str = "applied") -> Event:
    return Event(event_id, "t", b"{}", effect, expect)  # type: ignore[arg-type]


def test_the_plan_is_reproducible_and_mixes_what_the_issue_asks_for() -> None:
    plan = make_plan(2000, seed=7)
    assert plan.events == make_plan(2000, seed=7).events
    assert len(plan.events) == 2000
    assert len({e.event_id for e in plan.events}) == 2000
    kinds = Counter(e.effect.kind for e in plan.events)
    assert {"payment", "refund", "payout", "dispute_open", "dispute_close", "none"} <= set(kinds)
    copies = Counter(plan.sends)
    assert set(copies.values()) <= {1, 2, 3}
    assert 0.15 < sum(1 for c in copies.values() if c > 1) / 2000 < 0.25
    assert any(c == 3 for c in copies.values())
    assert plan.sends != sorted(plan.sends), "shuffled"
    assert {e.poison for e in plan.events if e.expect == "dead_letter"} >= {"unknown account"}
    assert {e.effect.account for e in plan.events if e.expect != "dead_letter"} <= set(ACCOUNTS)


def test_the_rules_for_each_kind() -> None:
    a = ACCOUNTS[0]
    events = [
        _event("p1", Effect("payment", a, 1000, "ch1")),
        _event("r1", Effect("refund", a, 300, "ch1")),
        _event("r2", Effect("refund", a, 200, "ch1")),  # an older, smaller cumulative
        _event("po", Effect("payout", a, 50)),
        _event("d1", Effect("dispute_open", a, 400, "ch1", "dp1")),
        _event("d2", Effect("dispute_close", a, 400, "ch1", "dp1", won=False)),
        _event("d3", Effect("dispute_open", a, 100, "ch1", "dp2")),
        _event("d4", Effect("dispute_close", a, 70, "ch1", "dp3", won=True)),  # never opened
    ]
    result = expected(events)
    assert (result.balances[a].available, result.balances[a].held) == (
        1000 - 300 - 50 - 400 - 100,
        100,
    )
    assert result.outcome["d4"] == "applied"  # recorded; its opening would apply it


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(min_value=0, max_value=2**31), st.randoms(use_true_random=False))
def test_the_expectation_does_not_depend_on_arrival_order(seed: int, rng: random.Random) -> None:
    events = make_plan(150, seed).events
    shuffled = list(events)
    rng.shuffle(shuffled)
    first, second = expected(events), expected(shuffled)
    assert first.outcome == second.outcome
    assert {k: (v.available, v.held) for k, v in first.balances.items()} == {
        k: (v.available, v.held) for k, v in second.balances.items()
    }
