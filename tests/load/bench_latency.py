"""Local stack figures: time to ready (cold and warm) and webhook -> balance latency.

Starts `hookyard dev` as a user would, in a temporary data directory, on 127.0.0.1 only.
Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.stack import ADMIN_TOKEN, TEST_SECRETS, free_port, signed_stripe, stripe_event

EVENTS = 100


def start(data_dir: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKYARD_")}
    env.update(TEST_SECRETS)
    env.update(
        {
            "HOOKYARD_DATA_DIR": str(data_dir),
            "HOOKYARD_PORT": str(port),
            "HOOKYARD_PUBSUB_PORT": "0",
            "HOOKYARD_LOG_LEVEL": "WARNING",
        }
    )
    url = f"http://127.0.0.1:{port}"
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hookyard", "dev"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = began + 120
    while time.perf_counter() < deadline:
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return proc, url, time.perf_counter() - began
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit("hookyard dev exited before becoming ready")
        time.sleep(0.02)
    proc.kill()
    raise SystemExit("hookyard dev did not become ready within 120 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def latency(url: str) -> list[float]:
    client = httpx.Client(
        base_url=url, timeout=10, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    client.put("/admin/accounts/bench", json={"currency": "usd"})
    samples = []
    expected = client.get("/admin/accounts/bench").json()["available"]
    for i in range(EVENTS):
        body = stripe_event(
            f"evt_bench_{time.time_ns()}_{i}",
            "payment_intent.succeeded",
            "bench",
            amount_received=1,
        )
        began = time.perf_counter()
        response = client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))
        assert response.status_code == 202, response.text
        expected += 1
        while client.get("/admin/accounts/bench").json()["available"] < expected:
            if time.perf_counter() - began > 30:
                raise SystemExit("event not applied within 30 s")
            time.sleep(0.002)
        samples.append(time.perf_counter() - began)
    return samples


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="hookyard-bench-"))
    try:
        proc, _, cold = start(root / "data")
        stop(proc)
        proc, url, warm = start(root / "data")
        try:
            samples = latency(url)
        finally:
            stop(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ms = sorted(s * 1000 for s in samples)
    print(f"time to ready, new data dir (initdb + migrations): {cold:.2f} s")
    print(f"time to ready, existing data dir:                  {warm:.2f} s")
    print(
        f"webhook -> balance visible over {EVENTS} events: p50 {statistics.median(ms):.1f} ms, "
        f"p95 {ms[int(len(ms) * 0.95) - 1]:.1f} ms, max {ms[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
