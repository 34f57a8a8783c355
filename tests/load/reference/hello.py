"""The reference function: what functions-framework serves when the function does nothing."""

from __future__ import annotations

from typing import Any


def hello(request: Any) -> str:
    return "ok"
