"""The engine's pg8000 dialect, counted on the wire: a prepared statement is one round trip
once its connection has seen it, COMMIT and ROLLBACK one each, and what the driver raised
before (error classes, SQLSTATEs) it still raises."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from common.config import Settings
from common.db.engine import create_db_engine, single_statement
from common.db.pg8000_dialect import prepared
from common.db.sqlstate import as_permanent
from tests.support.pg_wire import RoundTripCounter

INSERT = prepared("INSERT INTO probe (k, v) VALUES (:k, :v) RETURNING k, v")
TO_INT = prepared("SELECT CAST(:x AS int) AS n")


@pytest.fixture
def one_connection(wire: RoundTripCounter) -> Iterator[Engine]:
    engine = create_db_engine(Settings(db_pool_size=1, db_max_overflow=0), wire.url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE probe (k text PRIMARY KEY, v int)"))
    try:
        yield engine
    finally:
        engine.dispose()


def backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def test_a_prepared_statement_is_one_round_trip_after_its_first(
    one_connection: Engine, wire: RoundTripCounter
) -> None:
    with one_connection.begin() as conn:
        conn.execute(INSERT, {"k": "a", "v": 1})  # prepared here, on this connection
    with wire.counting() as made, one_connection.begin() as conn:
        row = conn.execute(INSERT, {"k": "b", "v": 2}).one()
    assert (row.k, row.v) == ("b", 2)
    assert made == [3]  # BEGIN, the statement, COMMIT
    with wire.counting() as made, one_connection.begin() as conn:
        conn.execute(sa.text("INSERT INTO probe (k, v) VALUES (:k, :v)"), {"k": "c", "v": 3})
    assert made == [5]  # an unprepared statement: pg8000's three, and BEGIN and COMMIT
    with one_connection.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM probe")).scalar_one() == 3


def test_an_empty_transaction_sends_nothing(one_connection: Engine, wire: RoundTripCounter) -> None:
    backend_pid(one_connection)
    with wire.counting() as made, one_connection.begin():
        pass
    assert made == [0]


def test_a_prepared_statement_raises_what_the_cursor_raised(one_connection: Engine) -> None:
    with one_connection.begin() as conn:
        conn.execute(INSERT, {"k": "a", "v": 1})
    with pytest.raises(sa.exc.IntegrityError) as duplicate, one_connection.begin() as conn:
        conn.execute(INSERT, {"k": "a", "v": 2})
    assert duplicate.value.orig.args[0]["C"] == "23505"  # type: ignore[union-attr]
    with pytest.raises(sa.exc.ProgrammingError) as bad, one_connection.begin() as conn:
        conn.execute(TO_INT, {"x": "not a number"})
    assert as_permanent(bad.value) is not None  # a data exception (22P02) is not retried
    with one_connection.connect() as conn:
        assert conn.execute(sa.text("SELECT v FROM probe")).scalars().all() == [1]


def test_a_replacement_connection_prepares_again(one_connection: Engine) -> None:
    with one_connection.begin() as conn:
        assert conn.execute(TO_INT, {"x": "1"}).scalar_one() == 1
    before = backend_pid(one_connection)
    with pytest.raises(RuntimeError), one_connection.begin() as conn:
        raise RuntimeError("discards the connection and its prepared statements")
    with one_connection.begin() as conn:
        assert conn.execute(TO_INT, {"x": "2"}).scalar_one() == 2
    assert backend_pid(one_connection) != before


def test_a_rollback_is_one_round_trip(one_connection: Engine, wire: RoundTripCounter) -> None:
    backend_pid(one_connection)
    with wire.counting() as made, one_connection.connect() as conn:
        conn.execute(TO_INT, {"x": "1"})  # prepared: BEGIN, Parse+Describe, Bind+Execute
        conn.rollback()
    assert made == [4]


def test_a_single_statement_is_one_round_trip_checkin_included(
    one_connection: Engine, wire: RoundTripCounter
) -> None:
    with single_statement(one_connection) as conn:
        conn.execute(INSERT, {"k": "warm", "v": 0})
    with wire.counting() as made:
        with single_statement(one_connection) as conn:
            conn.execute(INSERT, {"k": "s", "v": 1})
        with one_connection.begin() as conn:  # the next user gets a transaction again
            conn.execute(INSERT, {"k": "t", "v": 2})
            conn.rollback()
    assert made == [1 + 3]  # the statement alone; then BEGIN, the statement, ROLLBACK
    with one_connection.connect() as conn:
        keys = conn.execute(sa.text("SELECT k FROM probe ORDER BY k")).scalars().all()
        level = conn.execute(sa.text("SHOW transaction_isolation")).scalar_one()
    assert keys == ["s", "warm"]
    assert level == "read committed"


def test_a_stricter_isolation_level_is_set_and_undone(one_connection: Engine) -> None:
    def level(conn: sa.Connection) -> str:
        return str(conn.execute(sa.text("SHOW transaction_isolation")).scalar_one())

    with one_connection.connect() as conn:
        strict = conn.execution_options(isolation_level="SERIALIZABLE")
        assert level(strict) == "serializable"
        strict.rollback()
    with one_connection.connect() as conn:
        assert level(conn) == "read committed"
    with single_statement(one_connection) as conn:
        assert level(conn) == "read committed"
