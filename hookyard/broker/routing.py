"""Which subscriptions take a message: those of its topic whose filter matches it.

Pub/Sub acknowledges on the subscriber's behalf what a filter rejects, so such a message is
never pushed there and never dead-lettered. That holds for every publish, the broker's own
dead-letter forwards included: a dead-lettered copy is an ordinary message on its topic.
"""

from __future__ import annotations

from collections.abc import Mapping

from common.pubsub_filter import Filter, parse_filter
from common.topology import Subscription, Topology


class Routes:
    def __init__(self, topology: Topology) -> None:
        self._topology = topology
        self._filters: dict[str, Filter] = {
            sub.name: parse_filter(sub.filter) for sub in topology.subscriptions
        }

    def subscribers(self, topic: str, attributes: Mapping[str, str]) -> list[Subscription]:
        return [
            sub
            for sub in self._topology.subscriptions_of(topic)
            if self._filters[sub.name].matches(attributes)
        ]
