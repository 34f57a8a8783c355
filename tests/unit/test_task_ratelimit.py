from __future__ import annotations

import pytest

from hookyard.tasks.ratelimit import TokenBucket


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_starts_full_and_spends_the_burst_at_once(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    assert bucket.available() == 5
    assert bucket.take(8) == 5
    assert bucket.available() == 0
    assert bucket.take(1) == 0


def test_refills_at_the_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=20, burst=1, clock=clock)
    assert bucket.take(1) == 1
    assert bucket.seconds_until_available() == pytest.approx(0.05)
    clock.advance(0.049)
    assert bucket.available() == 0
    clock.advance(0.001)
    assert bucket.available() == 1


def test_never_holds_more_than_the_burst(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=100, burst=3, clock=clock)
    bucket.take(3)
    clock.advance(60)
    assert bucket.available() == 3


def test_dispatches_over_time_follow_rate_times_time_plus_burst(clock: FakeClock) -> None:
    """Taking every token the moment it appears yields burst + rate * t, no more."""
    bucket = TokenBucket(rate=20, burst=4, clock=clock)
    sent = 0
    start = clock.now
    for ms in range(5001):  # 5 s in 1 ms steps, both ends included
        clock.now = start + ms / 1000
        sent += bucket.take(100)
    assert sent == 4 + 100


def test_fractional_rates(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=0.5, burst=1, clock=clock)
    assert bucket.take(1) == 1
    assert bucket.seconds_until_available() == pytest.approx(2.0)
    clock.advance(1.0)
    assert bucket.available() == 0
    assert bucket.seconds_until_available() == pytest.approx(1.0)
    clock.advance(1.0)
    assert bucket.take(1) == 1


def test_unspent_reservations_come_back_without_overflowing(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=10, burst=4, clock=clock)
    assert bucket.take(4) == 4
    bucket.give_back(3)
    assert bucket.available() == 3
    clock.advance(10)
    bucket.give_back(4)
    assert bucket.available() == 4


def test_float_refill_reaches_a_whole_token(clock: FakeClock) -> None:
    """Ten refills of a tenth each must make one token, rounding error or not."""
    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    bucket.take(1)
    for _ in range(10):
        clock.advance(0.1)
        bucket.available()
    assert bucket.available() == 1
    assert bucket.seconds_until_available() == 0.0


def test_a_clock_stepping_back_neither_adds_nor_removes(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=10, burst=2, clock=clock)
    bucket.take(2)
    clock.advance(-5)
    assert bucket.available() == 0
    clock.advance(5.1)  # back to 0.1 s after the take
    assert bucket.available() == 1


def test_asking_for_more_than_the_burst_waits_for_a_full_bucket(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=10, burst=2, clock=clock)
    bucket.take(2)
    assert bucket.seconds_until_available(5) == pytest.approx(0.2)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_rejects_impossible_settings(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must"):
        TokenBucket(rate, burst)
