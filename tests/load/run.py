"""`make bench`: every benchmark, one after another, printing figures."""

from __future__ import annotations

from tests.load import (
    bench_cold_start,
    bench_emulators,
    bench_latency,
    bench_signatures,
    bench_slow_connections,
    bench_worker,
)


def main() -> None:
    print("== signature verification ==")
    bench_signatures.main()
    print("\n== local stack ==")
    bench_latency.main()
    print("\n== ledger worker vs pgbench ==")
    bench_worker.main()
    print("\n== local emulators ==")
    bench_emulators.main()
    print("\n== slow connections ==")
    bench_slow_connections.main()
    print("\n== cold start per deployed target ==")
    bench_cold_start.main()


if __name__ == "__main__":
    main()
