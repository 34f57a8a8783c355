"""A connection that saw an exception inside a transaction never carries another statement.

The reproduction: pg8000 raises while encoding a parameter after it has started the
statement on the wire. Before the fix the connection went back to the pool out of step with
the server; the next transaction on it read the wrong replies (`SELECT 0` returned `[]`) and
could commit half of what it meant to.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support.postgres import TestServer


@pytest.fixture
def one_connection(pg_server: TestServer, database: str) -> Iterator[Engine]:
    """A pool of exactly one connection, so every transaction reuses the suspect one."""
    engine = pg_server.engine(database, db_pool_size=1, db_max_overflow=0)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE probe (x text)")
    try:
        yield engine
    finally:
        engine.dispose()


def half_then(engine: Engine, statement: str, params: dict[str, object]) -> None:
    """Writes a row, then runs a statement that fails, in one transaction."""
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO probe VALUES ('first half')"))
        conn.execute(sa.text(statement), params)


def fail_between_statements(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO probe VALUES ('never committed')"))
        raise RuntimeError("a handler failed between statements")


def backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


@pytest.mark.parametrize(
    "poison",
    ["acct_\ud800", "\udfff"],
    ids=["lone-high-surrogate", "lone-low-surrogate"],
)
def test_a_client_side_encoding_error_discards_the_connection(
    one_connection: Engine, poison: str
) -> None:
    before = backend_pid(one_connection)
    with pytest.raises(UnicodeEncodeError):
        half_then(one_connection, "INSERT INTO probe VALUES (:x)", {"x": poison})
    for _ in range(3):
        with one_connection.begin() as conn:
            assert conn.execute(sa.text("SELECT 0")).all() == [(0,)]
            assert conn.execute(sa.text("SELECT count(*) FROM probe")).scalar_one() == 0
    assert backend_pid(one_connection) != before


def test_an_out_of_range_datetime_parameter_discards_the_connection(
    one_connection: Engine,
) -> None:
    from datetime import datetime, timedelta, timezone

    before = backend_pid(one_connection)
    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(OverflowError):
        half_then(one_connection, "SELECT CAST(:t AS timestamptz)", {"t": early})
    with one_connection.begin() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM probe")).scalar_one() == 0
    assert backend_pid(one_connection) != before


def test_any_exception_inside_a_transaction_discards_the_connection(
    one_connection: Engine,
) -> None:
    before = backend_pid(one_connection)
    with pytest.raises(RuntimeError):
        fail_between_statements(one_connection)
    with one_connection.begin() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM probe")).scalar_one() == 0
    assert backend_pid(one_connection) != before


def test_a_clean_transaction_keeps_its_connection(one_connection: Engine) -> None:
    before = backend_pid(one_connection)
    with one_connection.begin() as conn:
        conn.execute(sa.text("INSERT INTO probe VALUES ('kept')"))
    assert backend_pid(one_connection) == before
    with one_connection.connect() as conn:
        assert conn.execute(sa.text("SELECT x FROM probe")).scalar_one() == "kept"
