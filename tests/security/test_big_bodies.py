"""Bodies over a surface's limit are refused without being read into memory, in the
production shape: `hookyard dev` in its own process, each target its own gunicorn behind the
front door, the emulators apart.

Each body-taking surface gets 100 bodies of 50 MiB from a caller it admits, half with the
size declared in Content-Length and half chunked, generated one reused 64 KiB block at a
time; each must be a 413 problem. Meanwhile no process of the stack may grow: its peak RSS
over the run (the kernel's high-water mark, reset after a warm-up) and its RSS after it both
stay within RSS_BOUND of where they started. A memory bound, not a time one: how long the run
takes is printed, never asserted; each socket wait is bounded against a hang.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from hookyard.local_identity import LocalIdentity
from tests.support.dev_process import DevProcess, dev_process
from tests.support.oversized_body import Refusal, post_oversized
from tests.support.postgres import TestServer
from tests.support.stack import ADMIN_TOKEN

pytestmark = pytest.mark.timeout(1800)  # the hang guard for the whole run

BODY_BYTES = 50 * 1024 * 1024
BODIES = 100
RSS_BOUND = 32 * 1024 * 1024
"""The most a surface may hold of a body is /pubsub's 14 MiB limit, read in 64 KiB chunks and
dropped at limit+1 without being joined: 32 MiB leaves the allocator its slack over that and
is still less than one 50 MiB body, so a process that held any one body whole fails."""
PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Surface:
    name: str
    path: str
    headers: dict[str, str]


@pytest.fixture(scope="module")
def stack(pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevProcess]:
    """On the session's PostgreSQL, so every process measured is the stack's own; the
    scheduler off, so nothing but these requests runs."""
    database = pg_server.create_database()
    try:
        with dev_process(
            tmp_path_factory.mktemp("big-bodies") / "data",
            DATABASE_URL=pg_server.url_for(database),
            SCHEDULER_ENABLED="false",
        ) as dev:
            yield dev
    finally:
        pg_server.drop_database(database)


def surfaces(dev: DevProcess) -> list[Surface]:
    """Each surface with the credential of a caller it admits, so what refuses the body is
    its limit (a webhook checks its limit before its signature)."""
    identity = LocalIdentity(dev.data_dir / "secrets", dev.url)
    json_type = {"Content-Type": "application/json"}

    def service(surface: Any) -> dict[str, str]:
        return {**json_type, "Authorization": f"Bearer {identity.token(surface)}"}

    return [
        Surface("webhook", "/webhooks/stripe", json_type),
        Surface("admin", "/admin/dead-letters/discard",
                {**json_type, "Authorization": f"Bearer {ADMIN_TOKEN}"}),
        Surface("pubsub", "/pubsub/ledger", service("pubsub")),
        Surface("tasks", "/tasks/jobs", {**service("tasks"), "X-CloudTasks-TaskName": "t-1"}),
        Surface("cron", "/cron/reconcile",
                {**service("cron"), "X-CloudScheduler-ScheduleTime": "2031-01-01T00:00:00Z"}),
        Surface("cloud-tasks-api",
                "/v2/projects/local-project/locations/us-central1/queues/jobs/tasks", json_type),
    ]  # fmt: skip


def test_every_body_taking_surface_is_in_the_run(stack: DevProcess) -> None:
    """Every operation the stack documents with a request body, and cron (whose Scheduler
    ticks carry none, but which must refuse one all the same), is one of the surfaces sent to."""
    document = httpx.get(f"{stack.url}/openapi.json", timeout=60).json()
    taking = {
        path.split("/")[1]
        for path, item in document["paths"].items()
        for operation in item.values()
        if isinstance(operation, dict) and "requestBody" in operation
    }
    assert taking | {"cron"} == {surface.path.split("/")[1] for surface in surfaces(stack)}


def test_bodies_over_every_limit_are_refused_without_being_read(stack: DevProcess) -> None:
    address = ("127.0.0.1", stack.port)
    targets = surfaces(stack)
    for surface in targets:  # the first requests build each target and import its code
        for chunked in (False, True):
            _check(surface, post_oversized(address, surface.path, surface.headers, BODY_BYTES,
                                           chunked=chunked))  # fmt: skip
    processes = stack.processes()
    before = _rss(processes)
    _reset_peaks(processes)
    for surface in targets:
        started = time.monotonic()
        offered = 0
        answers: Counter[int | None] = Counter()
        for n in range(BODIES):
            refusal = post_oversized(
                address, surface.path, surface.headers, BODY_BYTES, chunked=n % 2 == 1
            )
            _check(surface, refusal)
            answers[refusal.status] += 1
            offered += refusal.sent
        assert answers == {413: BODIES}, (surface.name, answers)
        print(
            f"{surface.name}: {BODIES} x 50 MiB refused in {time.monotonic() - started:.1f} s;"
            f" {offered / BODIES / 2**20:.1f} MiB of each offered before the 413"
        )
    after = _rss(processes)
    peaks = {p.pid: _peak(p.pid) for p in processes}
    assert [p.pid for p in stack.processes()] == [p.pid for p in processes], "a process restarted"
    grown = {
        _name(p): (before[p.pid], peaks[p.pid], after[p.pid])
        for p in processes
        if max(peaks[p.pid], after[p.pid]) - before[p.pid] >= RSS_BOUND
    }
    assert not grown, "RSS before, peak and after, in MiB: " + json.dumps(
        {name: [round(v / 2**20) for v in values] for name, values in grown.items()}
    )


def _check(surface: Surface, refusal: Refusal) -> None:
    assert refusal.status == 413, (surface.name, refusal.status, refusal.body[:300])
    if surface.name == "cloud-tasks-api":  # Google's error shape, as Cloud Tasks answers
        assert json.loads(refusal.body)["error"]["code"] == 413, refusal.body[:300]
        return
    assert refusal.content_type.startswith(PROBLEM), (surface.name, refusal.content_type)
    assert json.loads(refusal.body)["status"] == 413


def _rss(processes: list[psutil.Process]) -> dict[int, int]:
    return {p.pid: p.memory_info().rss for p in processes}


def _reset_peaks(processes: list[psutil.Process]) -> None:
    """Linux keeps each process's peak RSS (VmHWM); writing 5 to clear_refs starts it over."""
    for process in processes:
        Path(f"/proc/{process.pid}/clear_refs").write_text("5")


def _peak(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def _name(process: psutil.Process) -> str:
    return f"{process.pid} " + " ".join(process.cmdline()[1:5])
