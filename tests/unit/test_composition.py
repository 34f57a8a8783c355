"""The composition root builds each target from what it is given, and only what it uses:
the webhook and cron targets never reach for a database, a deployment stays lean."""

from __future__ import annotations

from typing import Any

import pytest

from common.config import Settings
from common.topology import load_topology
from composition.adapters import Adapters
from composition.targets import TARGETS, Composition, TargetName


class Untouchable:
    def __init__(self, what: str, used: list[str]) -> None:
        self.what, self.used = what, used

    def __call__(self) -> Any:
        self.used.append(self.what)
        raise AssertionError(f"{self.what} built while composing")


@pytest.mark.parametrize("name", ["webhook", "cron", "admin"])
def test_building_a_function_target_reaches_no_database(name: TargetName) -> None:
    used: list[str] = []
    adapters = Adapters(
        engine=Untouchable("engine", used),
        secrets=object,
        publisher=object,
        tasks=Untouchable("task queue", used),
        certificates=object,
        stack_url="http://127.0.0.1:1",
    )
    target = Composition(Settings(), adapters, load_topology()).build(name)
    assert callable(target.handle)
    assert used == []


def test_the_worker_target_is_built_from_the_adapters_it_is_given() -> None:
    used: list[str] = []
    adapters = Adapters(
        engine=Untouchable("engine", used),
        secrets=object,
        publisher=object,
        tasks=object,
        certificates=object,
    )
    with pytest.raises(AssertionError, match="engine built"):
        Composition(Settings(), adapters, load_topology()).build("worker")
    assert used == ["engine"]
    assert set(TARGETS) == {"webhook", "cron", "admin", "worker"}
