from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hookyard.stack import LocalStack
from tests.support.pg_wire import RoundTripCounter
from tests.support.postgres import TestServer
from tests.support.stack import TEST_SECRETS, running_stack


@pytest.fixture(autouse=True)
def _test_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TEST_SECRETS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def stack(pg_server: TestServer, database: str, tmp_path: Path) -> Iterator[LocalStack]:
    """The real local stack, in process, on this test's fresh database; modules that need
    another topology or settings define their own."""
    with running_stack(pg_server, database, tmp_path) as running:
        yield running


@pytest.fixture
def wire(pg_server: TestServer, database: str) -> Iterator[RoundTripCounter]:
    """The test's database behind a proxy that counts what crosses the wire."""
    with RoundTripCounter(pg_server.url_for(database)) as counter:
        yield counter
