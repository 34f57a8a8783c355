"""The local stack under a flood of slow connections: what it refuses, and how soon it
answers again once they all close at once (issue #11 saw 33 s of silence).

Opens CONNECTIONS sockets to a running `hookyard dev` (make bench's shared one; run alone, one
of its own in a temporary data directory), each sending a request whose body stops short of
its Content-Length, then closes them all together. Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import resource
import shutil
import socket
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.load.bench_latency import running

CONNECTIONS = 1500
PARTIAL = (
    b"POST /webhooks/stripe HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
    b'Content-Length: 100\r\n\r\n{"short":'
)


def first_answer(url: str, bound_s: float = 120) -> float:
    """Seconds until /health/live answers 200; the bound only stops a hang."""
    began = time.perf_counter()
    while time.perf_counter() - began < bound_s:
        try:
            if httpx.get(f"{url}/health/live", timeout=5).status_code == 200:
                return time.perf_counter() - began
        except httpx.HTTPError:
            time.sleep(0.01)
    return float("inf")


def _refused(conn: socket.socket) -> bool:
    conn.setblocking(False)
    try:
        return conn.recv(12).startswith(b"HTTP/1.1 503")
    except BlockingIOError:
        return False


def measure(url: str) -> None:
    """Floods the stack at `url`, prints what it refused and when it answered again. The
    stack is left answering; make bench drives it last, then stops it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, CONNECTIONS * 2)), hard))
    address = (urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 80)
    sockets = []
    try:
        for _ in range(CONNECTIONS):
            s = socket.create_connection(address, timeout=30)
            s.sendall(PARTIAL)
            sockets.append(s)
        time.sleep(1)
        refused = sum(_refused(s) for s in sockets)
        held_answer = first_answer(url)
    finally:
        for s in sockets:
            s.close()
    after_close = first_answer(url)
    print(f"{CONNECTIONS} slow connections: {refused} refused at once with 503 (over the cap)")
    print(
        f"first 200 from /health/live while they are held: {held_answer:.1f} s "
        "(the cap is full until the read timeout frees slots)"
    )
    print(f"/health/live right after all of them close at once: {after_close * 1000:.0f} ms")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="hookyard-bench-slow-"))
    try:
        with running(root / "data") as dev:
            measure(dev.url)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
