"""`make bench`: every benchmark in one run, printed and written to docs/benchmarks.md.

Each bench prints as it goes; the figures that have a target in issue #13 also go into the
table at the top of the page, and everything printed goes below it, so the page is the
whole run. A SIGTERM (or Ctrl-C) stops the run with every server it started stopped.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tests.load import (
    bench_cold_start,
    bench_e2e,
    bench_emulators,
    bench_env,
    bench_ingest,
    bench_latency,
    bench_search,
    bench_signatures,
    bench_slow_connections,
    bench_telemetry,
    bench_worker,
)
from tests.load.report import PAGE, Bar, Report, Row, Spread, write

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
    seq_p50, seq_p99 = f.sequential_p50_ms, f.sequential_p99_ms
    load_p50, load_p99 = f.loaded_p50_ms, f.loaded_p99_ms
    report.rows.append(Row(
        "webhook → balance visible, sequential: p50 / p99 ms",
        f"{seq_p50} / {seq_p99}", "—", "—", "< 25 / < 100",
        seq_p50.median < 25 and seq_p99.median < 100,
    ))  # fmt: skip
    report.rows.append(Row(
        f"webhook → balance visible under {f.loaded_rate.median:,.0f} req/s "
        "(half the pipeline's rate): p50 / p99 ms",
        f"{load_p50} / {load_p99}", "—", "—", "< 25 / < 100",
        load_p50.median < 25 and load_p99.median < 100,
    ))  # fmt: skip
    report.bars.append(Bar("Ingest, req/s (wrk, 32 conns)", "requests/s",
                           f.webhook_rate.median, (f.webhook_rate.low, f.webhook_rate.high),
                           "ff hello", f.hello_rate.median,
                           (f.hello_rate.low, f.hello_rate.high)))  # fmt: skip
    report.bars.append(Bar("Ingest p50 latency at peak, ms", "ms",
                           f.webhook_p50_ms.median, (f.webhook_p50_ms.low, f.webhook_p50_ms.high),
                           "ff hello", f.hello_p50_ms.median,
                           (f.hello_p50_ms.low, f.hello_p50_ms.high)))  # fmt: skip
    for name, idle, loaded in (("p50", seq_p50, load_p50), ("p99", seq_p99, load_p99)):
        report.bars.append(Bar(f"Webhook → balance {name}, ms (Hookyard)", "ms", idle.median,
                               (idle.low, idle.high), "under half load", loaded.median,
                               (loaded.low, loaded.high), label="idle"))  # fmt: skip


def e2e_rows(report: Report, run: bench_e2e.E2ERun) -> None:
    report.raw["e2e"] = run
    ours, peer = run.runs["hookyard"], run.runs["hookrelay"]

    def spread(figures: list[bench_e2e.E2EFigures], pick: Callable[[Any], float]) -> Spread:
        return Spread.of([pick(f) for f in figures])

    events = spread(ours, lambda f: f.events_per_s)
    peer_events = spread(peer, lambda f: f.events_per_s)
    ingest = spread(ours, lambda f: f.ingest_per_s)
    peer_ingest = spread(peer, lambda f: f.ingest_per_s)
    ratio = events.median / peer_events.median
    first = ours[0]
    report.rows.append(Row(
        f"end to end: {first.events:,} Stripe payments + {first.duplicates:,} duplicates, "
        f"{bench_e2e.THREADS} client threads, until every balance is right (events/s)",
        f"{events}", f"hookrelay 0.4 tuned: {peer_events}", f"{ratio:.2f}", "≥ 1.5",
        ratio >= 1.5,
    ))  # fmt: skip
    report.rows.append(Row(
        "same run, ingest (deliveries/s while sending)",
        f"{ingest}", f"{peer_ingest}", f"{ingest.median / peer_ingest.median:.2f}", "—", None,
    ))  # fmt: skip
    low, high = run.events_at
    growth = {name: after / before - 1 for name, (before, after) in run.memory.items()}
    worst = max(growth, key=lambda name: growth[name]) if growth else "none"
    if growth:
        report.rows.append(Row(
            f"memory: RSS growth of each process from {low:,} to {high:,} events "
            f"(worst: {worst})",
            f"{growth[worst]:+.1%}", "—", "—",
            "within 20 % from 10,000 to 100,000 events", None,
        ))  # fmt: skip
    report.bars.append(Bar("End to end, events/s", "events/s", events.median,
                           (events.low, events.high), "hookrelay 0.4", peer_events.median,
                           (peer_events.low, peer_events.high)))  # fmt: skip


def worker_rows(report: Report, f: bench_worker.WorkerFigures) -> None:
    report.raw["worker"] = f
    http, tps = f.over_http, f.pgbench_tps
    report.rows.append(Row(
        f"one worker process applying payments over HTTP, {f.threads} concurrent (events/s)",
        f"{http}", f"pgbench, same SQL: {tps}", f"{f.http_share:.2f}", "≥ 0.5",
        f.http_share >= 0.5,
    ))  # fmt: skip
    report.bars.append(Bar("Worker over HTTP vs pgbench, events/s", "events/s", http.median,
                           (http.low, http.high), "pgbench", tps.median,
                           (tps.low, tps.high)))  # fmt: skip


def search_rows(report: Report, f: bench_search.SearchFigures) -> None:
    report.raw["search"] = f
    report.rows.append(Row(
        f"event search, JSON path over {bench_search.ROWS:,} events "
        f"({f.matches} matches): p50 / p99 ms",
        f"{f.p50_ms:.2f} / {f.p99_ms:.2f}", f"same query, sequential scan: {f.reference_ms}",
        f"{f.ratio:,.0f}", f"< {bench_search.TARGET_MS:.0f} ms p50",
        f.p50_ms < bench_search.TARGET_MS,
    ))  # fmt: skip


def shared(report: Report, data_dir: Path) -> None:
    """The benches that drive `hookyard dev` share two starts of it: the end-to-end bench's,
    in a new data directory (the cold time to ready), and a restart on that directory (the
    warm one), which the ingest and slow-connection benches then drive, the flood last."""
    e2e = run(report, "end to end beside hookrelay 0.4",
              lambda: bench_e2e.main(data_dir))  # fmt: skip
    e2e_rows(report, e2e)
    with contextlib.ExitStack() as cleanup:
        with captured(report, "time to ready (hookyard dev)"):
            dev = cleanup.enter_context(bench_latency.running(data_dir))
            bench_latency.report(e2e.ready_s, dev.ready_s)
        ingest = run(report, "ingest and webhook -> balance latency",
                     lambda: bench_ingest.main(dev))  # fmt: skip
        ingest_rows(report, ingest)
        with captured(report, "slow connections"):
            bench_slow_connections.measure(dev.url)
            cleanup.close()  # the stop belongs to this section's time


def main() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    report = Report()
    quick = os.environ.get("BENCH_REPS") or os.environ.get("EVENTS")
    if quick:
        report.section("A shortened run", f"BENCH_REPS={os.environ.get('BENCH_REPS', '')} "
                       f"EVENTS={os.environ.get('EVENTS', '')}: figures from fewer repetitions "
                       "or events than the default.")  # fmt: skip
    chart_python = str(bench_env.ensure())
    root = Path(tempfile.mkdtemp(prefix="hookyard-bench-"))
    try:
        shared(report, root / "hookyard")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    worker = run(report, "ledger worker vs pgbench", bench_worker.main)
    worker_rows(report, worker)
    search = run(report, "event search over 100,000 events", bench_search.main)
    search_rows(report, search)
    run(report, "signature verification", bench_signatures.main)
    run(report, "metrics and traces per webhook request", bench_telemetry.main)
    run(report, "local emulators", bench_emulators.main)
    run(report, "cold start per deployed target", bench_cold_start.main)
    write(report, {"hookrelay": "0.4.0"}, chart_python=chart_python)
    print(f"\nwrote {os.path.relpath(PAGE)}")


if __name__ == "__main__":
    main()
