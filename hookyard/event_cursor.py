"""Where `hookyard listen` is in the event log, so each event is forwarded exactly once.

The admin API pages the log by id ("ids after this one"). Ids come from a sequence, and
two events recorded at once may commit out of order: id 11 can be visible before id 10.
So polls start a few ids before the highest one forwarded (`LOOKBACK`) and the ids
already forwarded in that window are remembered, not re-sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LOOKBACK = 32

Key = tuple[str, str]


def log_id(item: dict[str, Any]) -> int | None:
    value = item.get("id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def event_key(item: dict[str, Any]) -> Key:
    return (str(item.get("source")), str(item.get("event_id")))


@dataclass
class Position:
    floor: int = 0
    """Ids at or below it were there before `listen` started: never forwarded."""
    high: int = 0
    """The highest id taken."""
    seen: dict[Key, int] = field(default_factory=dict)

    def query(self) -> str | None:
        """The `cursor` for the next poll."""
        start = max(self.floor, self.high - LOOKBACK)
        return str(start) if start > 0 else None

    def is_new(self, item: dict[str, Any]) -> bool:
        number = log_id(item)
        if number is not None and number <= self.floor:
            return False
        return event_key(item) not in self.seen

    def take(self, item: dict[str, Any]) -> None:
        """Marks an item handled (forwarded, filtered out or skipped)."""
        number = log_id(item)
        if number is None:
            raise ValueError("an event-log item without its id")
        self.seen[event_key(item)] = number
        self.high = max(self.high, number)

    def page_done(self) -> None:
        """After every item of a page was taken: forgets what no poll will return again."""
        start = int(self.query() or 0)
        self.seen = {k: v for k, v in self.seen.items() if v > start}

    def start_here(self) -> None:
        """Everything taken so far was already in the log: the next poll starts after it."""
        self.floor = self.high
