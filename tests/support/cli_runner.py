"""`CliRunner` for commands run in-process next to a running stack."""

from __future__ import annotations

import sys
import threading
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any, TextIO

from typer.testing import CliRunner


class _ThreadRouted:
    """A stream that sends the invoking thread's writes to `mine` and others' to `others`.

    The stack runs in this process and its threads log to whatever `sys.stdout` is at the
    moment; without this, their log lines would land in the CLI's captured `--json` output,
    which a real `hookyard` process (separate from the server) never sees.
    """

    def __init__(self, mine: TextIO, others: TextIO) -> None:
        self._mine, self._others, self._owner = mine, others, threading.get_ident()

    def _target(self) -> TextIO:
        return self._mine if threading.get_ident() == self._owner else self._others

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)


class Runner(CliRunner):
    """`CliRunner` whose captured stdout/stderr hold only what the CLI itself printed."""

    @contextmanager
    def isolation(self, *args: Any, **kwargs: Any) -> Generator[Any]:
        outer_out, outer_err = sys.stdout, sys.stderr
        with super().isolation(*args, **kwargs) as streams:
            sys.stdout = _ThreadRouted(sys.stdout, outer_out)
            sys.stderr = _ThreadRouted(sys.stderr, outer_err)
            yield streams
