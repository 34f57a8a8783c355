"""Cold start per deployed target against a bare functions-framework hello, in one run.

Each sample spawns `functions-framework --target T --source S --port P` (gunicorn, as the
image's CMD and Cloud Run run it) and times spawn → the first HTTP response on
`/health/live`, which goes through the target's lazy import of its handler: what a cold
instance's first request pays. Targets run in gcp mode with secrets from the environment
and a database URL nothing listens on (the probe needs no database). Samples are
interleaved so machine load falls on every target alike; one untimed round first writes
the bytecode the image ships precompiled. Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.support.runtime_image import (
    ROOT,
    functions_framework,
    functions_framework_args,
    serving_target,
)
from tests.support.stack import TEST_SECRETS, free_port

RUNS = int(os.environ.get("BENCH_REPS", "3"))
TARGETS = ("webhook", "cron", "admin", "worker")
PROBE = "/health/live"
HELLO = """import functions_framework


@functions_framework.http
def hello(request):
    return "hello"
"""


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOOKYARD_", "PUBSUB_"))}
    env.update(TEST_SECRETS)
    env.update({
        "HOOKYARD_ENV": "gcp", "HOOKYARD_SECRETS": "env", "HOOKYARD_LOG_LEVEL": "WARNING",
        "HOOKYARD_WORKER_URL": "https://worker.example",
        "HOOKYARD_DATABASE_URL": "postgresql+pg8000://hookyard:unused@127.0.0.1:9/hookyard",
    })  # fmt: skip
    return env


def cold_start(target: str, source: Path, env: dict[str, str]) -> float:
    port = free_port()
    command = [functions_framework(), *functions_framework_args(target, source, port)]
    began = time.perf_counter()
    with serving_target(command, port, env, cwd=source.parent, probe=PROBE, poll_s=0.002):
        return time.perf_counter() - began


def main() -> None:
    env = environment()
    with tempfile.TemporaryDirectory(prefix="hookyard-hello-") as tmp:
        hello = Path(tmp) / "main.py"
        hello.write_text(HELLO)
        sources = {"hello": hello, **dict.fromkeys(TARGETS, ROOT / "main.py")}
        for target, source in sources.items():
            cold_start(target, source, env)
        samples: dict[str, list[float]] = {target: [] for target in sources}
        for _ in range(RUNS):
            for target, source in sources.items():
                samples[target].append(cold_start(target, source, env))
    baseline = statistics.median(samples["hello"])
    print(f"spawn → first response on {PROBE}, {RUNS} runs each, interleaved")
    print(f"{'target':<10}{'median':>10}{'min-max':>18}{'vs hello':>10}")
    for target, times in samples.items():
        median = statistics.median(times)
        spread = f"{min(times) * 1000:.0f}-{max(times) * 1000:.0f} ms"
        print(f"{target:<10}{median * 1000:>7.0f} ms{spread:>18}{median / baseline:>10.2f}")


if __name__ == "__main__":
    main()
