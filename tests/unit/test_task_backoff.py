from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.topology import TaskRetryConfig
from hookyard.tasks.backoff import (
    MAX_RETRY_AFTER_S,
    exhausted,
    failure_delay,
    retry_after_s,
    retry_delay,
)

NOW = datetime(2026, 10, 16, 12, 0, 0, tzinfo=UTC)


def _config(**kw: float) -> TaskRetryConfig:
    return TaskRetryConfig.model_validate(kw)


def test_the_documented_example_exactly() -> None:
    config = _config(min_backoff_s=10, max_backoff_s=300, max_doublings=3)
    delays = [retry_delay(config, n) for n in range(1, 9)]
    assert delays == [10.0, 20.0, 40.0, 80.0, 160.0, 240.0, 300.0, 300.0]


def test_the_default_queue_doubles_sixteen_times_then_grows_linearly() -> None:
    config = TaskRetryConfig()  # 0.1 s .. 3600 s, 16 doublings
    assert retry_delay(config, 1) == pytest.approx(0.1)
    assert retry_delay(config, 10) == pytest.approx(0.1 * 2**9)
    assert retry_delay(config, 15) == pytest.approx(1638.4)
    assert retry_delay(config, 16) == pytest.approx(3276.8)
    assert retry_delay(config, 17) == 3600.0  # 6553.6 passes the cap
    assert retry_delay(config, 100) == 3600.0


@pytest.mark.parametrize(
    ("doublings", "expected"),
    [
        # n <= D+1 doubles; from n = D+2 on, m * 2**D * (n - D).
        (0, [1.0, 2.0, 3.0, 4.0, 5.0]),
        (1, [1.0, 2.0, 4.0, 6.0, 8.0]),
        (2, [1.0, 2.0, 4.0, 8.0, 12.0]),
        (4, [1.0, 2.0, 4.0, 8.0, 16.0]),
    ],
)
def test_max_doublings_boundary(doublings: int, expected: list[float]) -> None:
    config = _config(min_backoff_s=1, max_backoff_s=1000, max_doublings=doublings)
    assert [retry_delay(config, n) for n in range(1, 6)] == expected


def test_the_linear_phase_is_continuous_with_the_last_doubling() -> None:
    """At n = D+1 both branches give m * 2**D, so the switch never shortens a delay."""
    config = _config(min_backoff_s=0.05, max_backoff_s=1000, max_doublings=5)
    delays = [retry_delay(config, n) for n in range(1, 12)]
    assert delays == sorted(delays)
    assert delays[5] == pytest.approx(0.05 * 2**5)  # n = 6 = D+1: last doubling
    assert delays[6] == pytest.approx(0.05 * 2**5 * 2)  # n = 7: linear, 2 * m * 2**D
    assert delays[7] == pytest.approx(0.05 * 2**5 * 3)


def test_fast_config_used_by_the_integration_tests() -> None:
    config = _config(min_backoff_s=0.1, max_backoff_s=1, max_doublings=2)
    delays = [retry_delay(config, n) for n in range(1, 7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_equal_bounds_and_zero_minimum() -> None:
    assert retry_delay(_config(min_backoff_s=7, max_backoff_s=7), 9) == 7.0
    assert retry_delay(_config(min_backoff_s=0, max_backoff_s=60), 9) == 0.0


def test_huge_retry_counts_and_doublings_stay_finite() -> None:
    config = _config(min_backoff_s=0.1, max_backoff_s=3600, max_doublings=10_000)
    assert retry_delay(config, 5_000) == 3600.0
    assert retry_delay(TaskRetryConfig(), 10**9) == 3600.0


def test_retry_count_below_one_counts_as_the_first_retry() -> None:
    config = _config(min_backoff_s=10, max_backoff_s=300, max_doublings=3)
    assert retry_delay(config, 0) == 10.0


@pytest.mark.parametrize(
    ("limits", "attempts", "elapsed", "expected"),
    [
        ({"max_attempts": 3}, 2, 0.0, False),
        ({"max_attempts": 3}, 3, 0.0, True),
        ({"max_attempts": 1}, 1, 0.0, True),
        ({"max_attempts": -1}, 10_000, 1e9, False),
        # Both set: both must be reached.
        ({"max_attempts": 3, "max_retry_duration_s": 60}, 3, 59.0, False),
        ({"max_attempts": 3, "max_retry_duration_s": 60}, 2, 61.0, False),
        ({"max_attempts": 3, "max_retry_duration_s": 60}, 3, 61.0, True),
        # Unlimited attempts: the duration alone decides.
        ({"max_attempts": -1, "max_retry_duration_s": 60}, 500, 60.0, False),
        ({"max_attempts": -1, "max_retry_duration_s": 60}, 2, 60.5, True),
    ],
)
def test_exhausted_only_when_every_set_limit_is_reached(
    limits: dict[str, float], attempts: int, elapsed: float, expected: bool
) -> None:
    assert exhausted(_config(**limits), attempts, elapsed) is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("5", 5.0),
        (" 12 ", 12.0),
        ("0", 0.0),
        ("Fri, 16 Oct 2026 12:00:30 GMT", 30.0),
        ("Fri, 16 Oct 2026 11:59:00 GMT", 0.0),  # in the past: no extra wait
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        ("99999999", MAX_RETRY_AFTER_S),
    ],
)
def test_retry_after_header(header: str | None, expected: float | None) -> None:
    assert retry_after_s(header, NOW) == expected


@pytest.mark.parametrize(("status", "header", "expected"), [
    (503, "30", 30.0),      # longer than the backoff: honoured
    (429, "30", 30.0),
    (503, "1", 10.0),       # shorter: the backoff stands, Retry-After is a lower bound
    (500, "30", 10.0),      # only 429 and 503 are honoured
    (None, "30", 10.0),
    (503, None, 10.0),
    (503, "garbage", 10.0),
])  # fmt: skip
def test_failure_delay_takes_retry_after_as_a_lower_bound(
    status: int | None, header: str | None, expected: float
) -> None:
    config = _config(min_backoff_s=10, max_backoff_s=300, max_doublings=3)
    assert failure_delay(config, 1, status, header, NOW) == expected
