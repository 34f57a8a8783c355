"""A push target on a real socket for the emulators' tests: records every request, answers
as the test scripts it, and tracks how many requests were in flight at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class Timed(Protocol):
    started: float
    ended: float


R = TypeVar("R", bound=Timed)
Reply = tuple[int, float, dict[str, str]]
"""(status, seconds to wait before answering, response headers)"""


class ScriptedServer(Generic[R]):
    def __init__(
        self,
        parse: Callable[[Request], R],
        same: Callable[[R, R], bool],
        answer: Callable[[R, int], Reply],
        describe: Callable[[R], object] = repr,
    ) -> None:
        """`same` says which earlier records count as attempts of this one (`nth`);
        `describe` is how a record reads in a failed wait."""
        self.records: list[R] = []
        self._describe = describe
        self.max_active = 0
        self._parse, self._same, self.answer = parse, same, answer
        self._active = 0
        self._cond = threading.Condition()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(60)

    def _app(self, environ: Any, start_response: Any) -> Any:
        record = self._parse(Request(environ))
        record.started = time.monotonic()
        with self._cond:
            nth = sum(1 for earlier in self.records if self._same(earlier, record))
            self.records.append(record)
            self._active += 1
            self.max_active = max(self.max_active, self._active)
        try:
            status, delay, headers = self.answer(record, nth)
            time.sleep(delay)
        finally:
            with self._cond:
                self._active -= 1
                record.ended = time.monotonic()
                self._cond.notify_all()
        return Response(status=status, headers=headers)(environ, start_response)

    def wait_for(self, done: Callable[[list[R]], bool], timeout: float = 60.0) -> list[R]:
        """`timeout` is a bound against hangs only: a busy machine must never reach it."""
        with self._cond:
            ok = self._cond.wait_for(lambda: done(self.records), timeout)
            seen = list(self.records)
        assert ok, f"receiver saw {[self._describe(r) for r in seen]}"
        return seen

    def matching(self, keep: Callable[[R], bool]) -> list[R]:
        with self._cond:
            return [r for r in self.records if keep(r)]
