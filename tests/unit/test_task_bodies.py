"""A task body the worker cannot use is a PermanentError, so it is dead-lettered at once: any
other exception is taken for a passing failure and retried with backoff until the queue's
last attempt. The bodies below are the minimal ones the security suite's fuzzing found."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from common.errors import PermanentError
from common.job_tasks import parse_job_task
from common.topology import get_topology
from workers.jobs import parse_statement_task
from workers.notifications import Notifier
from workers.replay import ReplayRunner


def _outbox_id(body: bytes) -> None:
    Notifier(engine=None, secrets=None)(body)  # type: ignore[arg-type]


def _replay(body: bytes) -> None:
    ReplayRunner(None, get_topology(), None, None)(body)  # type: ignore[arg-type]


PARSERS: dict[str, Callable[[bytes], Any]] = {
    "jobs": parse_job_task, "statements": parse_statement_task,
    "notifications": _outbox_id, "replays": _replay,
}  # fmt: skip
DEEP = b'{"a":' * 2000 + b"1" + b"}" * 2000


@pytest.mark.parametrize("parse", PARSERS.values(), ids=PARSERS.keys())
@pytest.mark.parametrize(
    "body",
    [DEEP, b"[" * 2000, b'{"replay_id": 1e999, "seq": 1, "outbox_id": 1e999}'],
    ids=["deep-object", "deep-array", "infinite-number"],
)
def test_a_body_no_worker_can_use_is_a_permanent_error(
    parse: Callable[[bytes], Any], body: bytes
) -> None:
    with pytest.raises(PermanentError):
        parse(body)
