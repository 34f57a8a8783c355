"""The bench reads wrk's report; a misread figure would put a wrong number in docs/."""

from __future__ import annotations

import pytest

from tests.load.wrk import parse

CLEAN = """\
Running 2s test @ http://127.0.0.1:18777/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.85ms    3.31ms  39.37ms   88.56%
    Req/Sec   429.65     97.86   610.00     75.00%
  Latency Distribution
     50%    3.92ms
     75%    5.69ms
     90%    8.02ms
     99%   16.43ms
  857 requests in 2.01s, 5.87MB read
Requests/sec:    426.89
Transfer/sec:      2.92MB
"""

TROUBLED = """\
Running 10s test @ http://127.0.0.1:40000
  2 threads and 32 connections
  Latency Distribution
     50%  812.00us
     75%    1.20ms
     90%  400.00ms
     99%    1.87s
  1200 requests in 10.00s, 1.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 5
  Non-2xx or 3xx responses: 12
Requests/sec:    120.00
"""


def test_a_clean_report_gives_rate_and_percentiles() -> None:
    result = parse(CLEAN)
    assert result.requests == 857
    assert result.seconds == pytest.approx(2.01)
    assert result.rate == pytest.approx(426.89)
    assert result.p50_ms == pytest.approx(3.92)
    assert result.p99_ms == pytest.approx(16.43)
    assert result.errors == 0


def test_units_are_normalised_and_every_failure_counts() -> None:
    result = parse(TROUBLED)
    assert result.p50_ms == pytest.approx(0.812)
    assert result.p99_ms == pytest.approx(1870.0)
    assert result.errors == 3 + 5 + 12


def test_a_report_without_figures_is_refused() -> None:
    with pytest.raises(ValueError, match="wrk report has no"):
        parse("unable to connect to 127.0.0.1:1 Connection refused\n")
