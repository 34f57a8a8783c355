"""`make bench`: every benchmark, one after another, printing figures."""

from __future__ import annotations

from tests.load import bench_latency, bench_signatures


def main() -> None:
    print("== signature verification ==")
    bench_signatures.main()
    print("\n== local stack ==")
    bench_latency.main()


if __name__ == "__main__":
    main()
