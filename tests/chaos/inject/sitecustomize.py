"""Test builds only: makes a share of the worker's push deliveries fail transiently.

`make chaos` puts this directory on the PYTHONPATH of the stack's processes, so Python imports
this module at start-up; the deployed image has no such file. When `workers.push` is imported
(the worker target only), `Worker.deliver` is wrapped: half of the injected failures come
before the delivery (nothing applied), half after it committed (the effect is in, the
acknowledgement is lost), both answered 503 so the broker redelivers.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import random
import sys
from types import ModuleType
from typing import Any

SHARE = float(os.environ.get("HOOKYARD_CHAOS_FAIL_SHARE", "0") or 0)


def _wrap(module: ModuleType) -> None:
    from common.errors import ServiceUnavailable

    worker = module.Worker
    deliver = worker.deliver
    rng = random.Random()

    def flaky(self: Any, subscription: str, envelope: Any) -> None:
        roll = rng.random()
        if roll < SHARE / 2:
            raise ServiceUnavailable("chaos: a failure injected before the delivery")
        deliver(self, subscription, envelope)
        if roll < SHARE:
            raise ServiceUnavailable("chaos: a failure injected after the delivery committed")

    worker.deliver = flaky


class _WrapOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "workers.push":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader: Any = spec.loader
        exec_module = loader.exec_module

        def exec_and_wrap(module: ModuleType) -> None:
            exec_module(module)
            _wrap(module)

        loader.exec_module = exec_and_wrap
        return spec


if SHARE > 0:
    sys.meta_path.insert(0, _WrapOnImport())
