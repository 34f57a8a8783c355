from __future__ import annotations

import pytest

from common.topology import RetryPolicy
from hookyard.broker.backoff import PushBackoff, redelivery_delay


@pytest.mark.parametrize("attempts", [1, 2, 5, 100])
def test_no_policy_makes_the_message_itself_due_at_once(attempts: int) -> None:
    """What spaces its attempts is the subscription's push backoff, below."""
    assert redelivery_delay(None, attempts) == 0.0


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [(1, 10.0), (2, 20.0), (3, 40.0), (4, 80.0), (6, 320.0), (7, 600.0), (50, 600.0)],
)
def test_doubles_from_minimum_up_to_maximum(attempts: int, expected: float) -> None:
    policy = RetryPolicy(minimum_backoff_s=10, maximum_backoff_s=600)
    assert redelivery_delay(policy, attempts) == expected


def test_fractional_policy_used_by_fast_tests() -> None:
    policy = RetryPolicy(minimum_backoff_s=0.05, maximum_backoff_s=0.2)
    delays = [redelivery_delay(policy, n) for n in range(1, 6)]
    assert delays == pytest.approx([0.05, 0.1, 0.2, 0.2, 0.2])


def test_zero_minimum_is_immediate_even_with_a_policy() -> None:
    policy = RetryPolicy(minimum_backoff_s=0, maximum_backoff_s=600)
    assert redelivery_delay(policy, 3) == 0.0


def test_equal_bounds_give_a_constant_delay() -> None:
    policy = RetryPolicy(minimum_backoff_s=7, maximum_backoff_s=7)
    assert [redelivery_delay(policy, n) for n in (1, 2, 10)] == [7.0, 7.0, 7.0]


def test_retrying_forever_stays_finite() -> None:
    policy = RetryPolicy(minimum_backoff_s=1, maximum_backoff_s=600)
    assert redelivery_delay(policy, 10_000) == 600.0


def test_attempt_zero_is_treated_as_the_first() -> None:
    policy = RetryPolicy(minimum_backoff_s=10, maximum_backoff_s=600)
    assert redelivery_delay(policy, 0) == 10.0


def test_push_backoff_doubles_from_100_ms_to_60_s_by_default() -> None:
    """Pub/Sub pauses a push subscription for 100 ms to 60 s after nacks."""
    pauses = [PushBackoff().pause_s(n) for n in range(1, 13)]
    assert pauses == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 60.0, 60.0]
    )
    assert PushBackoff().pause_s(10_000) == 60.0


def test_push_backoff_bounds_are_settable_for_tests() -> None:
    backoff = PushBackoff(initial_s=0.02, maximum_s=0.1)
    assert [backoff.pause_s(n) for n in range(1, 6)] == pytest.approx([0.02, 0.04, 0.08, 0.1, 0.1])


@pytest.mark.parametrize(("initial", "maximum"), [(-0.1, 1.0), (2.0, 1.0)])
def test_push_backoff_refuses_disordered_bounds(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="initial_s"):
        PushBackoff(initial_s=initial, maximum_s=maximum)
