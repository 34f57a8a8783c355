"""A queue's dispatch rate: a token bucket of `max_burst_size` refilled at the queue's rate.

This is the model Cloud Tasks documents (`max_burst_size` is the bucket). Tokens are
reserved before the claim that spends them and the unused ones handed back, so the time a
claim takes is not lost to a full bucket. Not thread-safe: the dispatcher loop owns it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Refills add floats; without this a bucket could sit at 0.9999999 tokens forever.
_EPSILON = 1e-9


class TokenBucket:
    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Starts full, as an idle queue has had all the time in the world to fill up."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._rate = float(rate)
        self._capacity = float(burst)
        self._clock = clock
        self._tokens = self._capacity
        self._stamp = clock()

    def available(self) -> int:
        """Whole tokens that can be spent now."""
        self._refill()
        return int(self._tokens + _EPSILON)

    def take(self, count: int) -> int:
        """Spends up to `count` tokens; returns how many were spent."""
        taken = min(max(count, 0), self.available())
        self._tokens -= taken
        return taken

    def give_back(self, count: int) -> None:
        """Returns tokens reserved by `take` but not spent, never beyond the bucket's size."""
        self._refill()
        self._tokens = min(self._capacity, self._tokens + max(count, 0))

    def seconds_until_available(self, count: int = 1) -> float:
        """How long until `count` tokens are there, 0 if they already are."""
        self._refill()
        missing = min(float(count), self._capacity) - self._tokens
        return 0.0 if missing <= _EPSILON else missing / self._rate

    def _refill(self) -> None:
        now = self._clock()
        if now > self._stamp:  # a clock that steps back adds nothing, and takes nothing
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
