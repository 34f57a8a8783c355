"""How long a nacked push waits before the next attempt.

Pub/Sub documents only the bounds of `retry_policy` and calls the curve best effort; the
emulator picks the plain doubling `min(max, min * 2**(attempts - 1))` so that tests and
people can predict it. Without a policy Pub/Sub redelivers immediately.
"""

from __future__ import annotations

from common.topology import RetryPolicy

# Past this many doublings every real policy has long hit its maximum; the cap only keeps
# the float arithmetic finite for subscriptions that retry forever.
_MAX_DOUBLINGS = 64


def redelivery_delay(policy: RetryPolicy | None, attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed delivery (1 for the first failure)."""
    if policy is None:
        return 0.0
    doublings = min(max(attempts - 1, 0), _MAX_DOUBLINGS)
    return float(min(policy.maximum_backoff_s, policy.minimum_backoff_s * 2.0**doublings))
