"""Ingest under load, side by side with the simplest peer, and webhook -> balance latency.

- The `webhook` target served by `functions-framework` (its gunicorn, its settings, WORKERS=2
  as in the issue), publishing into a running `hookyard dev`, against a function that only
  returns "ok" served by the same command: peak rate with wrk, then the webhook's p50/p99 at
  half its peak.
- The whole pipeline's sustained rate (accepted until every delivery is acked), and webhook
  -> balance visible through the stack's front door: sequential on an idle stack, and while
  wrk holds half the pipeline's rate (the load lasts as long as the probes, no longer).

Every figure is the median (min-max) of `BENCH_REPS` repetitions, interleaved (hello, webhook,
hello, ...; idle, loaded, idle, ...) so a machine that gets busier during the run skews both
sides alike. `make bench` hands it the stack the end-to-end bench started; run alone it starts
its own. Prints figures and returns them; asserts nothing about speed. Everything listens on
127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa

from common.config import Settings
from common.emulator_stats import emulator_backlog
from common.logging import configure_logging
from common.messaging.local_wiring import LocalWiring
from hookyard.supervisor import MAIN_PY, target_environment
from tests.load import bench_latency, wrk
from tests.load.bench_latency import DevStack
from tests.load.report import Spread
from tests.support.stack import ADMIN_TOKEN, TEST_SECRETS, free_port, signed_stripe, stripe_event

HELLO_PY = Path(__file__).parent / "reference" / "hello.py"
ACCOUNTS = 100
CONNECTIONS = 32
PEAK_SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
PACED_SECONDS = PEAK_SECONDS
PACED_CONNECTIONS = 16
WARM_SECONDS = 2
LATENCY_PROBES = 100
WARM_PROBES = 5
# The load under the loaded probes stops when they are done; this only bounds a hang.
LOADED_BOUND_S = 120
LOAD_SETTLE_S = 1.0
# wrk cycles through its requests: a run that outgrew them would repeat event ids.
MAX_UNIQUE_EVENTS = 60_000
# Functions-framework's defaults are one worker and 4 threads per core; the issue's
# measurement ran two workers, which both sides get here.
GUNICORN_ENV = {"WORKERS": "2"}


@dataclass
class IngestFigures:
    hello_rate: Spread
    hello_p50_ms: Spread
    webhook_rate: Spread
    webhook_p50_ms: Spread
    webhook_half_rate: Spread
    webhook_half_p50_ms: Spread
    webhook_half_p99_ms: Spread
    pipeline_rate: Spread
    sequential_p50_ms: Spread
    sequential_p99_ms: Spread
    loaded_p50_ms: Spread
    loaded_p99_ms: Spread
    loaded_rate: Spread
    """What wrk held while the loaded probes ran, each repetition's own."""
    reps: int
    errors: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.webhook_rate.median / self.hello_rate.median


class FunctionServer:
    """`functions-framework --target T` on its own port, as a deployment starts it."""

    def __init__(
        self, target: str, source: Path, env: dict[str, str], gunicorn: dict[str, str] | None = None
    ) -> None:
        """`gunicorn`: functions-framework's server settings (WORKERS, THREADS) for this one."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "functions-framework"), "--target", target,
             "--source", str(source), "--host", "127.0.0.1", "--port", str(self.port)],
            env={**env, **(GUNICORN_ENV if gunicorn is None else gunicorn)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SystemExit(f"functions-framework exited ({self._proc.returncode})")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + path, timeout=2).status_code < 500:
                    return
            time.sleep(0.05)
        raise SystemExit("functions-framework did not answer within 120 s")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)


def payments(count: int, tag: str) -> list[tuple[dict[str, str], bytes]]:
    """Unique Stripe payments of 1 cent over the bench accounts, compact and signed now: the
    event stripe_event builds, with a description that makes it about 1 KB, as in the issue."""
    now = int(time.time())
    out = []
    for i in range(count):
        body = json.dumps({
            "id": f"evt_{tag}_{i}", "object": "event", "type": "payment_intent.succeeded",
            "created": 1_700_000_000,
            "data": {"object": {"currency": "usd",
                                "metadata": {"account_id": f"acct_{random.randint(1, ACCOUNTS)}"},
                                "amount_received": 1, "description": "x" * 700}},
        }, separators=(",", ":")).encode()  # fmt: skip
        headers = signed_stripe(body, now=now)
        out.append(({"Stripe-Signature": headers["Stripe-Signature"]}, body))
    return out


def enough(rate: float, seconds: float) -> int:
    """Unique events for wrk to send `rate` a second for `seconds`, with room to spare."""
    return min(int(rate * seconds * 2) + 500, MAX_UNIQUE_EVENTS)


def warm_up(url: str, requests: list[tuple[dict[str, str], bytes]]) -> wrk.WrkResult:
    """Until a short run answers everything: each gunicorn worker imports its publisher on
    first use, and a cold start is bench_cold_start's figure, not this one's."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        result = wrk.run(url, requests, connections=CONNECTIONS, seconds=WARM_SECONDS)
        if result.requests > 0 and result.errors == 0:
            return result
    raise SystemExit(f"{url} never answered a short run without errors")


def backlog(engine: sa.Engine) -> int:
    figures = emulator_backlog(engine)
    return sum(s["backlog"] for s in figures["subscriptions"].values())


def drain(engine: sa.Engine, bound_s: float = 300) -> float:
    """Waits until every delivery is acked; returns when that happened."""
    deadline = time.monotonic() + bound_s
    while backlog(engine) > 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"backlog did not drain within {bound_s:.0f} s")
        time.sleep(0.1)
    return time.monotonic()


def paced_pause_ms(rate: float, connections: int) -> int:
    """wrk's per-connection delay that keeps `connections` near `rate` requests a second."""
    return max(int(connections * 1000 / max(rate, 1.0)), 1)


def balance_latency(url: str, probes: int, tag: str) -> list[float]:
    """Sequential webhooks through the front door, each timed until its balance shows it."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    samples = []
    with httpx.Client(base_url=url, timeout=30, headers=admin) as client:
        client.put("/admin/accounts/probe", json={"currency": "usd"})
        expected = client.get("/admin/accounts/probe").json()["available"]
        # The first probes of a fresh stack pay lazy imports (bench_cold_start's figure).
        for i in range(-WARM_PROBES, probes):
            body = stripe_event(f"evt_probe_{tag}_{time.time_ns()}_{i}",
                                "payment_intent.succeeded", "probe", amount_received=1)  # fmt: skip
            began = time.perf_counter()
            response = client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))
            if response.status_code != 202:
                raise SystemExit(f"probe webhook answered {response.status_code}")
            expected += 1
            while client.get("/admin/accounts/probe").json()["available"] < expected:
                if time.perf_counter() - began > 60:
                    raise SystemExit("a probe event was not applied within 60 s")
                time.sleep(0.002)
            if i >= 0:
                samples.append(time.perf_counter() - began)
    return samples


def percentiles(samples: list[float]) -> tuple[float, float]:
    ms = sorted(s * 1000 for s in samples)
    return statistics.median(ms), ms[min(int(len(ms) * 0.99), len(ms) - 1)]


def webhook_environment(dev: DevStack) -> dict[str, str]:
    """The `webhook` target's environment as `hookyard dev` would give it, for a server of
    its own pointed at that stack."""
    settings = Settings(
        port=urlsplit(dev.url).port, pubsub_port=dev.pubsub_port, data_dir=dev.data_dir,
        log_level="WARNING",
    )  # fmt: skip
    wiring = LocalWiring(
        stack_url=dev.url, worker_url=dev.url, pubsub_emulator_host=f"127.0.0.1:{dev.pubsub_port}"
    )
    env = target_environment(settings, wiring, database_url=dev.database_url)
    return {**env, **TEST_SECRETS}


def measure(dev: DevStack, reps: int = 3) -> IngestFigures:
    wrk.ensure_wrk()
    engine = sa.create_engine(dev.database_url, pool_size=1, max_overflow=0)
    hello: FunctionServer | None = None
    webhook: FunctionServer | None = None
    try:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=dev.url, timeout=30, headers=auth) as admin:
            for n in range(1, ACCOUNTS + 1):
                admin.put(f"/admin/accounts/acct_{n}", json={"currency": "usd"})
        hello = FunctionServer("hello", HELLO_PY, dict(os.environ))
        webhook = FunctionServer("webhook", MAIN_PY, webhook_environment(dev))
        hello.wait_ready("/")
        webhook.wait_ready("/health/live")
        hello_url = hello.url + "/"
        webhook_url = webhook.url + "/webhooks/stripe"
        warm_up(hello_url, [({}, b"{}")])
        warmed = warm_up(webhook_url, payments(enough(1000, WARM_SECONDS), "warm"))
        drain(engine)
        return _measure(dev, engine, hello_url, webhook_url, reps, warmed.rate)
    finally:
        for server in (hello, webhook):
            if server is not None:
                server.stop()
        engine.dispose()


def _measure(
    dev: DevStack, engine: sa.Engine, hello_url: str, webhook_url: str, reps: int, seen: float
) -> IngestFigures:
    hello_body: list[tuple[dict[str, str], bytes]] = [({}, b"{}")]
    hello_runs: list[wrk.WrkResult] = []
    webhook_runs: list[wrk.WrkResult] = []
    half_runs: list[wrk.WrkResult] = []
    pipeline: list[float] = []
    errors = 0
    for rep in range(1, reps + 1):
        hello = wrk.run(hello_url, hello_body, connections=CONNECTIONS, seconds=PEAK_SECONDS)
        hello_runs.append(hello)
        batch = payments(enough(max([seen] + [r.rate for r in webhook_runs]), PEAK_SECONDS),
                         f"peak{rep}")  # fmt: skip
        began = time.monotonic()
        run = wrk.run(webhook_url, batch, connections=CONNECTIONS, seconds=PEAK_SECONDS)
        webhook_runs.append(run)
        pipeline.append((run.requests - run.errors) / (drain(engine) - began))
        errors += run.errors + hello.errors
        print(f"  rep {rep} peak: hello {hello.rate:7.1f} req/s p50 {hello.p50_ms:6.1f} ms, "
              f"webhook {run.rate:6.1f} req/s p50 {run.p50_ms:6.1f} ms, "
              f"pipeline {pipeline[-1]:6.1f} events/s", flush=True)  # fmt: skip
    half = statistics.median(r.rate for r in webhook_runs) / 2
    for rep in range(1, reps + 1):
        run = wrk.run(webhook_url, payments(enough(half, PACED_SECONDS), f"half{rep}"),
                      connections=PACED_CONNECTIONS, seconds=PACED_SECONDS,
                      pause_ms=paced_pause_ms(half, PACED_CONNECTIONS))  # fmt: skip
        half_runs.append(run)
        errors += run.errors
        drain(engine)
        print(f"  rep {rep} webhook at half its peak: {run.rate:6.1f} req/s, "
              f"p50 {run.p50_ms:6.1f} ms, p99 {run.p99_ms:6.1f} ms", flush=True)  # fmt: skip

    target = statistics.median(pipeline) / 2
    idle: list[tuple[float, float]] = []
    loaded: list[tuple[float, float]] = []
    loaded_rates: list[float] = []
    for rep in range(1, reps + 1):
        idle.append(percentiles(balance_latency(dev.url, LATENCY_PROBES, f"idle{rep}")))
        batch = payments(enough(target, LOADED_BOUND_S / 2), f"loaded{rep}")
        with wrk.start(webhook_url, batch, connections=PACED_CONNECTIONS, seconds=LOADED_BOUND_S,
                       pause_ms=paced_pause_ms(target, PACED_CONNECTIONS)) as load:  # fmt: skip
            time.sleep(LOAD_SETTLE_S)  # let the load settle before the first probe
            loaded.append(percentiles(balance_latency(dev.url, LATENCY_PROBES, f"loaded{rep}")))
            result = load.stop()
        loaded_rates.append(result.rate)
        errors += result.errors
        drain(engine)
        print(f"  rep {rep} webhook -> balance: idle p50 {idle[-1][0]:5.1f} ms p99 "
              f"{idle[-1][1]:6.1f} ms; under {result.rate:5.1f} req/s p50 {loaded[-1][0]:5.1f} ms "
              f"p99 {loaded[-1][1]:6.1f} ms", flush=True)  # fmt: skip
    return IngestFigures(
        hello_rate=Spread.of([r.rate for r in hello_runs]),
        hello_p50_ms=Spread.of([r.p50_ms for r in hello_runs]),
        webhook_rate=Spread.of([r.rate for r in webhook_runs]),
        webhook_p50_ms=Spread.of([r.p50_ms for r in webhook_runs]),
        webhook_half_rate=Spread.of([r.rate for r in half_runs]),
        webhook_half_p50_ms=Spread.of([r.p50_ms for r in half_runs]),
        webhook_half_p99_ms=Spread.of([r.p99_ms for r in half_runs]),
        pipeline_rate=Spread.of(pipeline),
        sequential_p50_ms=Spread.of([p50 for p50, _ in idle]),
        sequential_p99_ms=Spread.of([p99 for _, p99 in idle]),
        loaded_p50_ms=Spread.of([p50 for p50, _ in loaded]),
        loaded_p99_ms=Spread.of([p99 for _, p99 in loaded]),
        loaded_rate=Spread.of(loaded_rates),
        reps=reps,
        errors=errors,
    )


def report(f: IngestFigures) -> None:
    print(f"functions-framework, WORKERS=2, wrk -t2 -c{CONNECTIONS} -d{PEAK_SECONDS}s, "
          f"median (min-max) of {f.reps}:")  # fmt: skip
    print(f"  bare hello:               {f.hello_rate} req/s, p50 {f.hello_p50_ms} ms")
    print(f"  webhook target (1 KB):    {f.webhook_rate} req/s, p50 {f.webhook_p50_ms} ms")
    print(f"  ratio webhook / hello:    {f.ratio:.2f}")
    print(f"  webhook at half its peak: {f.webhook_half_rate} req/s, "
          f"p50 {f.webhook_half_p50_ms} ms, p99 {f.webhook_half_p99_ms} ms")  # fmt: skip
    print(f"  pipeline, accepted until acked: {f.pipeline_rate} events/s")
    print(f"webhook -> balance visible, {LATENCY_PROBES} sequential probes a repetition, "
          f"median (min-max) of {f.reps}:")  # fmt: skip
    print(f"  idle:                     p50 {f.sequential_p50_ms} ms, "
          f"p99 {f.sequential_p99_ms} ms")  # fmt: skip
    print(f"  under {f.loaded_rate} req/s (half the pipeline's rate): "
          f"p50 {f.loaded_p50_ms} ms, p99 {f.loaded_p99_ms} ms")  # fmt: skip
    if f.errors:
        print(f"  ERRORS: {f.errors} requests failed during the runs; figures are suspect")


def main(dev: DevStack | None = None) -> IngestFigures:
    configure_logging("WARNING")
    reps = int(os.environ.get("BENCH_REPS", "3"))
    if dev is not None:
        figures = measure(dev, reps)
    else:
        root = Path(tempfile.mkdtemp(prefix="hookyard-bench-ingest-"))
        try:
            with bench_latency.running(root / "data") as own:
                figures = measure(own, reps)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    report(figures)
    return figures


if __name__ == "__main__":
    main()
