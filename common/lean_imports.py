"""Keeps libraries' optional terminal extras out of the deployed functions' processes.

structlog imports rich whenever it is installed (to pretty-print tracebacks in its console
renderer), and httpx imports its command-line client (click, pygments, rich) the same way.
Both are installed for the `hookyard` CLI, so without this every function cold start paid
for a terminal UI that a JSON-logging server never draws.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

CLI_EXTRAS = ("rich", "httpx._main")


@contextmanager
def without_modules(*names: str) -> Iterator[None]:
    """Imports inside the block find `names` not installed; afterwards they import again.

    A `None` entry in `sys.modules` makes `import` raise ImportError, which both libraries
    catch to fall back to their plain behaviour. A module already imported is left alone.
    """
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
