from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from tests.support.postgres import TestServer, start_test_server
from tests.support.secret_scan import (
    RESPONSE_HITS,
    captured_output_hits,
    watch_responses,
    watch_signing,
)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TestServer]:
    server = start_test_server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def database(pg_server: TestServer) -> Iterator[str]:
    """A fresh, fully migrated database for one test; dropped afterwards."""
    name = pg_server.create_database()
    try:
        yield name
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def engine(pg_server: TestServer, database: str) -> Iterator[Engine]:
    eng = pg_server.engine(database)
    try:
        yield eng
    finally:
        eng.dispose()


def pytest_configure(config: pytest.Config) -> None:
    watch_signing()
    watch_responses()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A test whose captured output (an in-process stack logs there) or whose responses hold
    a secret, a signature the tests made or a bearer token fails, whatever it asserted."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not report.passed:
        RESPONSE_HITS.clear()
        return
    # Sections accumulate over setup, call and teardown; each phase checks its own.
    hits = captured_output_hits(s for s in report.sections if s[0].endswith(f" {report.when}"))
    hits += RESPONSE_HITS
    RESPONSE_HITS.clear()
    if hits:
        report.outcome = "failed"
        report.longrepr = f"secrets leaked ({report.when}): {', '.join(hits)}"
