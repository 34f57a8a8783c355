"""`make chaos` at 1,000 events, in every `make test`: the same run, the same faults (each
at least twice), the same independent checks; `make chaos` takes it to 10,000."""

from __future__ import annotations

import random

import pytest

from tests.chaos.run import run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def test_nothing_is_lost_or_applied_twice_under_faults() -> None:
    seed = random.SystemRandom().randrange(2**31)
    outcome = run(events=1000, seed=seed)
    rerun = f"rerun: .venv/bin/python -m tests.chaos.run --events 1000 --seed {seed}"
    report = f"{rerun}\n{outcome.summary()}\n{outcome.details()}"
    print(report)
    assert outcome.verdict.accepted > 900, report
    assert outcome.verdict.lost == [], report
    assert outcome.verdict.double_applied == [], report
    assert outcome.verdict.invariant_violations == [], report
    assert outcome.verdict.wrong_balance == [], report
    assert outcome.verdict.wrong_outcome == [], report
    assert outcome.verdict.not_logged == [], report
    assert outcome.secret_hits == [], report
    assert outcome.quiet, report
    assert outcome.ok, report
