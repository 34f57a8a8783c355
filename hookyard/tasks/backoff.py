"""When a failed Cloud Tasks attempt is retried, and when a task has had all it gets.

Unlike Pub/Sub, Cloud Tasks documents its curve (reference/gcp.md 2.3), so the emulator
follows it exactly: doubling for `max_doublings` retries, then growing linearly, always
capped at `max_backoff`. Real Cloud Tasks truncates the backoffs to whole seconds; the
emulator keeps fractions so that tests can use a fast queue.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime

from common.topology import TaskRetryConfig

# 2**64 times any real min_backoff is past any real max_backoff; the cap only keeps the
# float arithmetic finite for queues that double (almost) forever.
_MAX_EXPONENT = 64
# The statuses after which Cloud Tasks honours the target's Retry-After.
RETRY_AFTER_STATUSES = frozenset({429, 503})
# The default max_backoff: a target cannot park a task for longer than a queue would.
MAX_RETRY_AFTER_S = 3600.0


def retry_delay(config: TaskRetryConfig, retry_count: int) -> float:
    """Seconds before the attempt whose `X-CloudTasks-TaskRetryCount` is `retry_count`.

    `retry_count` is that of the attempt about to be scheduled, so 1 after the first failure.
    """
    return doubling_then_linear(
        retry_count, config.min_backoff_s, config.max_backoff_s, config.max_doublings
    )


def doubling_then_linear(n: int, minimum: float, maximum: float, max_doublings: int) -> float:
    """The delay before retry `n` (1 first) on the curve Cloud Tasks and Cloud Scheduler share:
    `minimum` doubled for `max_doublings` retries, then growing by that last step, capped at
    `maximum` (with 10 s, 300 s and 3 doublings: 10, 20, 40, 80, 160, 240, 300, 300...)."""
    n = max(n, 1)
    if n <= max_doublings + 1:
        factor = 2.0 ** min(n - 1, _MAX_EXPONENT)
    else:
        factor = 2.0 ** min(max_doublings, _MAX_EXPONENT) * (n - max_doublings)
    return float(min(maximum, minimum * factor))


def exhausted(config: TaskRetryConfig, attempts: int, since_first_attempt_s: float) -> bool:
    """Whether a task that has just failed its `attempts`-th attempt must be deleted.

    Each limit that is set must be reached ("stop only when both are reached"); a limit that
    is not set (max_attempts -1, max_retry_duration 0) never stops a task by itself, so a
    queue with neither retries until the task is deleted some other way.
    """
    reached: list[bool] = []
    if config.max_attempts != -1:
        reached.append(attempts >= config.max_attempts)
    if config.max_retry_duration_s > 0:
        reached.append(since_first_attempt_s > config.max_retry_duration_s)
    return bool(reached) and all(reached)


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """A `Retry-After` header as seconds from `now`: delay-seconds or an HTTP-date.

    None when absent or unreadable: a garbled header must not change the schedule.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; "-0000" parses as naive
            return None
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def failure_delay(
    config: TaskRetryConfig,
    retry_count: int,
    status: int | None,
    retry_after: str | None,
    now: datetime,
) -> float:
    """The queue's backoff, lengthened to a 429/503's `Retry-After` but never shortened."""
    delay = retry_delay(config, retry_count)
    if status in RETRY_AFTER_STATUSES:
        asked = retry_after_s(retry_after, now)
        if asked is not None:
            delay = max(delay, asked)
    return delay
