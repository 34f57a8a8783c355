"""How long a nacked push waits before the next attempt.

With a `retry_policy`, each message waits on its own: Pub/Sub documents only the policy's
bounds and calls the curve best effort, so the emulator picks the plain doubling
`min(max, min * 2**(attempts - 1))` that tests and people can predict.

Without one, a nacked message is due again at once, and what spaces the attempts is
Pub/Sub's push backoff: after too many nacks it stops pushing to the whole subscription for
100 ms to 60 s, then resumes (https://cloud.google.com/pubsub/docs/push, "Push backoff").
Nothing more is documented; the emulator doubles the pause from 100 ms with each nack in a
row, up to 60 s, and an ack ends the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.topology import RetryPolicy

# Past this many doublings every real policy has long hit its maximum; the cap only keeps
# the float arithmetic finite for subscriptions that retry forever.
_MAX_DOUBLINGS = 64


def redelivery_delay(policy: RetryPolicy | None, attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed delivery (1 for the first failure)."""
    if policy is None:
        return 0.0
    return _doubled(policy.minimum_backoff_s, policy.maximum_backoff_s, attempts)


@dataclass(frozen=True, slots=True)
class PushBackoff:
    """Pub/Sub's subscription-wide pause for subscriptions without a retry policy; the
    bounds are Google's, and smaller ones keep tests short."""

    initial_s: float = 0.1
    maximum_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.initial_s <= self.maximum_s:
            raise ValueError("a push backoff needs 0 <= initial_s <= maximum_s")

    def pause_s(self, nacks_in_a_row: int) -> float:
        """How long the subscription stops after its `nacks_in_a_row`-th nack in a row."""
        return _doubled(self.initial_s, self.maximum_s, nacks_in_a_row)


def _doubled(minimum: float, maximum: float, n: int) -> float:
    doublings = min(max(n - 1, 0), _MAX_DOUBLINGS)
    return float(min(maximum, minimum * 2.0**doublings))
