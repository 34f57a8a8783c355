"""wrk, the load generator the issue's figures were taken with: installed on first use,
driven with a Lua script that cycles through pre-signed requests, its report parsed.

wrk runs in its own process (C, event loop), so the load generator costs little of the
CPU the measured server needs, which a Python client on the same two cores would not.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# Requests are lines "header-name\theader-value\tbody" (the body is compact JSON, one line).
_SCRIPT = r"""
local requests = {}
local counter = 0
local offset = 0
local stride = 1
local pause = 0
local path = "/"

function setup(thread)
  _G.threads = (_G.threads or 0) + 1
  thread:set("thread_index", _G.threads - 1)
end

function init(args)
  path = args[1]
  pause = tonumber(args[3])
  stride = tonumber(args[4])
  for line in io.lines(args[2]) do
    local name, value, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    local headers = {["Content-Type"] = "application/json"}
    if name ~= "" then headers[name] = value end
    requests[#requests + 1] = wrk.format("POST", path, headers, body)
  end
  offset = tonumber(thread_index) or 0
  -- From here on SIGINT is ignored, then handled: stop() may send it.
  local started = io.open(args[5], "w")
  if started then started:close() end
end

function request()
  local index = (counter * stride + offset) % #requests + 1
  counter = counter + 1
  return requests[index]
end

function delay()
  return pause
end
"""


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    """Non-2xx/3xx responses plus socket errors: a figure with errors is not a figure."""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("wrk is missing: install Debian's package `wrk` (apt-get install wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("apt-get installed wrk but it is not on PATH")
    return found


class Running:
    """A wrk run in the background: `stop()` ends it early (wrk reports on SIGINT) and
    returns its figures, so a load lasts exactly as long as what it is the background of."""

    def __init__(self, command: list[str], tmp: tempfile.TemporaryDirectory[str],
                 seconds: int) -> None:  # fmt: skip
        self._tmp = tmp
        self._started = Path(tmp.name, "started")
        self._seconds = seconds
        self._proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)  # fmt: skip

    def wait(self) -> WrkResult:
        """The figures once wrk ends by itself (its duration, plus a bound against a hang)."""
        try:
            out, err = self._proc.communicate(timeout=self._seconds + 60)
        finally:
            self.close()
        return self._result(out, err)

    def stop(self) -> WrkResult:
        """SIGINT until wrk reports. Sent before wrk's script has loaded, it would kill wrk
        without a report; sent before wrk has set its handler, it is ignored (so again)."""
        deadline = time.monotonic() + self._seconds + 60
        try:
            while not self._started.exists() and self._proc.poll() is None:
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(self._proc.args, self._seconds + 60)
                time.sleep(0.01)
            while True:
                if self._proc.poll() is None:
                    self._proc.send_signal(signal.SIGINT)
                try:
                    out, err = self._proc.communicate(timeout=1)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() > deadline:
                        raise
        finally:
            self.close()
        return self._result(out, err)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()
        self._tmp.cleanup()

    def _result(self, out: str, err: str) -> WrkResult:
        if self._proc.returncode != 0:
            raise subprocess.CalledProcessError(self._proc.returncode, self._proc.args, out, err)
        return parse(out)

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start(
    url: str,
    requests: Sequence[tuple[Mapping[str, str], bytes]],
    *,
    connections: int,
    seconds: int,
    threads: int = 2,
    pause_ms: int = 0,
) -> Running:
    """POSTs `requests` round-robin for at most `seconds`; `pause_ms` paces each connection
    (a rate below peak)."""
    wrk = ensure_wrk()
    tmp = tempfile.TemporaryDirectory(prefix="hookyard-wrk-")
    try:
        script, data = Path(tmp.name, "post.lua"), Path(tmp.name, "requests.tsv")
        script.write_text(_SCRIPT)
        lines = []
        for headers, body in requests:
            (name, value), *rest = list(headers.items()) or [("", "")]
            if rest or b"\n" in body or b"\t" in body:
                raise ValueError("one header and a one-line body per request")
            lines.append(f"{name}\t{value}\t{body.decode()}")
        data.write_text("\n".join(lines) + "\n")
        parts = urlsplit(url)
        base, path = f"{parts.scheme}://{parts.netloc}", parts.path or "/"
        command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
                   "-s", str(script), base, "--", path, str(data), str(pause_ms), str(threads),
                   str(Path(tmp.name, "started"))]  # fmt: skip
        return Running(command, tmp, seconds)
    except BaseException:
        tmp.cleanup()
        raise


def run(
    url: str,
    requests: Sequence[tuple[Mapping[str, str], bytes]],
    *,
    connections: int,
    seconds: int,
    threads: int = 2,
    pause_ms: int = 0,
) -> WrkResult:
    """POSTs `requests` round-robin for `seconds`; `pause_ms` paces each connection."""
    return start(url, requests, connections=connections, seconds=seconds, threads=threads,
                 pause_ms=pause_ms).wait()  # fmt: skip


def parse(report: str) -> WrkResult:
    def number(pattern: str) -> float:
        match = re.search(pattern, report)
        if match is None:
            raise ValueError(f"wrk report has no {pattern!r}:\n{report}")
        return float(match.group(1))

    def latency(percent: int) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", report, re.MULTILINE)
        if match is None:
            raise ValueError(f"wrk report has no {percent}% latency:\n{report}")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
        return float(match.group(1)) * scale

    requests = int(number(r"(\d+) requests in"))
    seconds_match = re.search(r"requests in ([\d.]+)(ms|s|m)", report)
    assert seconds_match is not None
    seconds = (
        float(seconds_match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[seconds_match.group(2)]
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", report)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       report)  # fmt: skip
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(g) for g in socket.groups()) if socket else 0
    )
    return WrkResult(
        requests=requests,
        seconds=seconds,
        rate=number(r"Requests/sec:\s+([\d.]+)"),
        p50_ms=latency(50),
        p99_ms=latency(99),
        errors=errors,
    )
