from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from tests.support.postgres import TestServer, start_test_server


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
