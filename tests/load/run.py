"""`make bench`: every benchmark in one run, printed and written to docs/benchmarks.md.

Each bench prints as it goes; the figures that have a target in issue #13 also go into the
table at the top of the page, and everything printed goes below it, so the page is the
whole run. A SIGTERM (or Ctrl-C) stops the run with every server it started stopped.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from tests.load import (
    bench_cold_start,
    bench_emulators,
    bench_ingest,
    bench_latency,
    bench_signatures,
    bench_slow_connections,
    bench_worker,
)
from tests.load.report import Bar, Report, Row, write

T = TypeVar("T")


class _Tee(io.TextIOBase):
    def __init__(self, *targets: Any) -> None:
        self._targets = targets

    def write(self, text: str) -> int:
        for target in self._targets:
            target.write(text)
            target.flush()
        return len(text)


@contextlib.contextmanager
def captured(report: Report, title: str) -> Iterator[None]:
    print(f"\n== {title} ==", flush=True)
    buffer = io.StringIO()
    began = time.monotonic()
    with contextlib.redirect_stdout(_Tee(sys.stdout, buffer)):
        yield
    took = time.monotonic() - began
    report.section(title, f"```\n{buffer.getvalue().rstrip()}\n```\n\n({took:.0f} s)")


def run(report: Report, title: str, bench: Callable[[], T]) -> T:
    with captured(report, title):
        return bench()


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def ingest_rows(report: Report, f: bench_ingest.IngestFigures) -> None:
    report.raw["ingest"] = f
    report.rows.append(Row(
        "`webhook` target vs bare functions-framework hello, same gunicorn settings (req/s)",
        f"{f.webhook_rate}", f"{f.hello_rate}", f"{f.ratio:.2f}", "≥ 0.5",
        f.ratio >= 0.5,
    ))  # fmt: skip
    report.rows.append(Row(
        f"`webhook` target at half its peak ({f.webhook_half_rate.median:,.0f} req/s): p99 ms",
        f"{f.webhook_half_p99_ms}", "—", "—", "< 100 ms", f.webhook_half_p99_ms.median < 100,
    ))  # fmt: skip
    seq_p50, seq_p99 = f.sequential_ms
    load_p50, load_p99 = f.loaded_ms
    report.rows.append(Row(
        "webhook → balance visible, sequential: p50 / p99 ms",
        f"{seq_p50:.1f} / {seq_p99:.1f}", "—", "—", "< 25 / < 100",
        seq_p50 < 25 and seq_p99 < 100,
    ))  # fmt: skip
    report.rows.append(Row(
        f"webhook → balance visible under {f.loaded_rate:,.0f} req/s "
        "(half the pipeline's rate): p50 / p99 ms",
        f"{load_p50:.1f} / {load_p99:.1f}", "—", "—", "< 25 / < 100",
        load_p50 < 25 and load_p99 < 100,
    ))  # fmt: skip
    report.bars.append(Bar("Ingest, req/s (wrk, 32 conns)", "requests/s",
                           f.webhook_rate.median, (f.webhook_rate.low, f.webhook_rate.high),
                           "ff hello", f.hello_rate.median,
                           (f.hello_rate.low, f.hello_rate.high)))  # fmt: skip
    report.bars.append(Bar("Ingest p50 latency at peak, ms", "ms",
                           f.webhook_p50_ms.median, (f.webhook_p50_ms.low, f.webhook_p50_ms.high),
                           "ff hello", f.hello_p50_ms.median,
                           (f.hello_p50_ms.low, f.hello_p50_ms.high)))  # fmt: skip
    report.bars.append(Bar("Webhook → balance p50, ms", "ms", seq_p50, (seq_p50, seq_p50),
                           "under half load", load_p50, (load_p50, load_p50)))  # fmt: skip


def worker_rows(report: Report, f: Any) -> None:
    if f is None:
        return
    report.raw["worker"] = f
    ratio = f.over_http / f.pgbench_tps
    report.rows.append(Row(
        f"one worker process applying payments over HTTP, {bench_worker.THREADS} concurrent "
        "(events/s)",
        f"{f.over_http:,.0f}", f"pgbench, same SQL: {f.pgbench_tps:,.0f}", f"{ratio:.2f}",
        "≥ 0.5", ratio >= 0.5,
    ))  # fmt: skip
    report.bars.append(Bar("Worker over HTTP vs pgbench, events/s", "events/s", f.over_http,
                           (f.over_http, f.over_http), "pgbench", f.pgbench_tps,
                           (f.pgbench_tps, f.pgbench_tps)))  # fmt: skip


def main() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    report = Report()
    quick = os.environ.get("BENCH_REPS") or os.environ.get("EVENTS")
    if quick:
        report.section("A shortened run", f"BENCH_REPS={os.environ.get('BENCH_REPS', '')} "
                       f"EVENTS={os.environ.get('EVENTS', '')}: figures from fewer repetitions "
                       "or events than the default.")  # fmt: skip
    ingest = run(report, "ingest and webhook -> balance latency", bench_ingest.main)
    ingest_rows(report, ingest)
    worker = run(report, "ledger worker vs pgbench", bench_worker.main)
    worker_rows(report, worker)
    run(report, "time to ready and webhook -> balance (hookyard dev)", bench_latency.main)
    run(report, "signature verification", bench_signatures.main)
    run(report, "local emulators", bench_emulators.main)
    run(report, "slow connections", bench_slow_connections.main)
    run(report, "cold start per deployed target", bench_cold_start.main)
    write(report, {}, chart_python=None)
    print(f"\nwrote {os.path.relpath(report_path())}")


def report_path() -> str:
    from tests.load.report import PAGE

    return str(PAGE)


if __name__ == "__main__":
    main()
