from __future__ import annotations

import threading
import time

from common.lazy import Lazy


def test_built_once_whatever_the_thread_race() -> None:
    calls: list[int] = []

    def build() -> object:
        calls.append(1)
        time.sleep(0.05)  # widen the window in which a second builder could slip in
        return object()

    lazy: Lazy[object] = Lazy(build)
    assert lazy.built is None
    barrier = threading.Barrier(8)
    seen: list[object] = []

    def get() -> None:
        barrier.wait()
        seen.append(lazy.get())

    threads = [threading.Thread(target=get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len({id(v) for v in seen}) == 1
    assert lazy.built is seen[0]


def test_an_injected_value_is_used_as_is() -> None:
    injected = object()
    assert Lazy(object, injected).get() is injected
