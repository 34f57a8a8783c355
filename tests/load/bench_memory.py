"""Memory under sustained load: the RSS of each of `hookyard dev`'s processes after 10,000
events and after 100,000, through the whole pipeline (ingest, broker, worker, ledger).

A leak shows as growth between the two samples; a cache that is bounded does not. wrk holds
a rate the pipeline keeps up with (measured first), in runs short enough that the Stripe
signatures it replays stay inside their five-minute tolerance. Prints figures and returns
them; asserts nothing. Everything stops by itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa

from tests.load import bench_latency, wrk
from tests.load.bench_ingest import ACCOUNTS, payments
from tests.support.stack import ADMIN_TOKEN

EVENTS = int(os.environ.get("MEMORY_EVENTS", "100000"))
CHECKPOINT = EVENTS // 10
CHUNK_SECONDS = 30
CONNECTIONS = 16


@dataclass(frozen=True, slots=True)
class ProcessMemory:
    name: str
    at_checkpoint_kb: int
    at_end_kb: int

    @property
    def growth(self) -> float:
        return self.at_end_kb / self.at_checkpoint_kb - 1


@dataclass(frozen=True, slots=True)
class MemoryFigures:
    checkpoint: int
    events: int
    rate: float
    processes: list[ProcessMemory]

    @property
    def worst(self) -> ProcessMemory:
        return max(self.processes, key=lambda p: p.growth)


DEV = "hookyard dev (front door, broker, tasks, scheduler)"
DEV_BESIDE_EMULATORS = "hookyard dev (front door, scheduler)"
EMULATORS = "emulators (Pub/Sub, Cloud Tasks)"


def role(args: Sequence[str]) -> str | None:
    """Hookyard's own processes by what they run; PostgreSQL's are its own business (shared
    memory), and anything else is not Hookyard's."""
    if "hookyard.target_process" in args:
        index = args.index("hookyard.target_process") + 1
        return f"target {args[index] if index < len(args) else '?'}"
    if "hookyard.emulator_process" in args:
        return EMULATORS
    if "hookyard" in " ".join(args) and "dev" in args:
        return DEV
    return None


def labels(root: int, processes: Mapping[int, tuple[int, Sequence[str]]]) -> list[tuple[int, str]]:
    """(pid, label) of every Hookyard process under `root`, from each process's parent and
    command line: a target's gunicorn arbiter and the workers it forked (same command line)
    apart, and `hookyard dev` named for what it still serves once the emulators run in a
    process of their own."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in sorted(processes.items()):
        children.setdefault(parent, []).append(pid)
    out: list[tuple[int, str]] = []
    pending: list[tuple[int, str | None]] = [(root, None)]
    while pending:
        pid, parent_label = pending.pop()
        label = role(processes[pid][1]) if pid in processes else None
        if (
            parent_label is not None
            and parent_label.startswith("target ")
            and (label is None or label == parent_label)
        ):
            label = f"{parent_label}, gunicorn worker"
        elif label is not None and label.startswith("target "):
            label = f"{label}, gunicorn arbiter"
        if label is None:
            continue
        out.append((pid, label))
        if not label.endswith("worker"):
            inherited = label.removesuffix(", gunicorn arbiter")
            pending.extend((child, inherited) for child in reversed(children.get(pid, [])))
    if any(label == EMULATORS for _, label in out):
        out = [(pid, DEV_BESIDE_EMULATORS if label == DEV else label) for pid, label in out]
    return out


def _processes() -> dict[int, tuple[int, list[str]]]:
    """pid -> (parent pid, command line) of every process this one can see."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            out[int(entry.name)] = (parent, [a.decode(errors="replace") for a in argv if a])
    return out


def rss_by_process(root_pid: int) -> dict[str, int]:
    """kB of resident memory of every Hookyard process under `root_pid`, by a stable name."""
    out: dict[str, int] = {}
    for pid, label in labels(root_pid, _processes()):
        with contextlib.suppress(OSError, StopIteration, ValueError):
            status = (Path("/proc") / str(pid) / "status").read_text().splitlines()
            kb = int(next(line for line in status if line.startswith("VmRSS")).split()[1])
            name, n = label, 2
            while name in out:
                name, n = f"{label} #{n}", n + 1
            out[name] = kb
    return out


def applied(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM inbox")).scalar_one())


def feed(url: str, engine: sa.Engine, until: int, rate: float, tag: str) -> None:
    """Signed chunks at `rate` until `until` events are applied (each chunk signed afresh)."""
    pause = max(int(CONNECTIONS * 1000 / rate), 1)
    chunk = 0
    while applied(engine) < until:
        wanted = until - applied(engine)
        seconds = max(min(CHUNK_SECONDS, int(wanted / rate) + 1), 1)
        batch = payments(min(int(rate * seconds * 1.5) + 100, 60_000), f"{tag}{chunk}")
        result = wrk.run(url, batch, connections=CONNECTIONS, seconds=seconds, pause_ms=pause)
        if result.errors:
            print(f"  note: {result.errors} requests failed in a chunk")
        chunk += 1
        _settle(engine)  # caught up before the next chunk: a rate the pipeline keeps


def _settle(engine: sa.Engine) -> None:
    deadline = time.monotonic() + 300
    last = -1
    while time.monotonic() < deadline:
        now = applied(engine)
        if now == last:
            return
        last = now
        time.sleep(1)


def measure(rate: float) -> MemoryFigures:
    root = Path(tempfile.mkdtemp(prefix="hookyard-bench-memory-"))
    try:
        with bench_latency.running(root / "data") as dev:
            auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            with httpx.Client(base_url=dev.url, timeout=30, headers=auth) as admin:
                for n in range(1, ACCOUNTS + 1):
                    admin.put(f"/admin/accounts/acct_{n}", json={"currency": "usd"})
            engine = sa.create_engine(dev.database_url, pool_size=1)
            try:
                target = f"{dev.url}/webhooks/stripe"
                began = time.monotonic()
                feed(target, engine, CHECKPOINT, rate, "m1_")
                first = rss_by_process(dev.proc.pid)
                feed(target, engine, EVENTS, rate, "m2_")
                took = time.monotonic() - began
                done = applied(engine)
                last = rss_by_process(dev.proc.pid)
            finally:
                engine.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    processes = [ProcessMemory(name, first[name], last[name]) for name in first if name in last]
    return MemoryFigures(CHECKPOINT, done, done / took, processes)


def report(f: MemoryFigures) -> None:
    print(f"RSS of each Hookyard process after {f.checkpoint:,} and {f.events:,} events "
          f"({f.rate:,.0f} events/s sustained):")  # fmt: skip
    for p in sorted(f.processes, key=lambda p: p.name):
        print(f"  {p.name:<58} {p.at_checkpoint_kb / 1024:7.1f} MiB -> "
              f"{p.at_end_kb / 1024:7.1f} MiB  ({p.growth:+.1%})")  # fmt: skip


def main(rate: float = 300.0) -> MemoryFigures:
    figures = measure(rate)
    report(figures)
    return figures


if __name__ == "__main__":
    main(float(os.environ.get("MEMORY_RATE", "300")))
