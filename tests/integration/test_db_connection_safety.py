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

from common.db import accounts
from common.errors import ServiceUnavailable
from tests.support.postgres import TestServer
from tests.support.pushes import ledger_push
from tests.support.stack import stripe_event, wait_for
from workers.push import Worker


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


def test_after_the_server_drops_every_connection_one_delivery_fails_then_all_land(
    pg_server: TestServer, database: str
) -> None:
    """What a PostgreSQL restart does to a pool: every pooled session is gone. The worker
    checks connections out without pinging them, so a delivery may find a dead one; it is
    nacked (the broker redelivers) and the pool drops every connection from before the
    restart, so the deliveries after it do not find the others one by one."""
    engine = pg_server.engine(database, db_pool_size=3, db_max_overflow=0)
    try:
        with engine.begin() as conn:
            accounts.create(conn, "acct", "usd", None)
        worker = Worker(engine)
        with engine.connect() as a, engine.connect() as b, engine.connect() as c:
            pids = [
                int(x.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()) for x in (a, b, c)
            ]
        terminate(pg_server, database, pids)

        nacks = 0
        for n in range(6):
            push = ledger_push(f"e{n}", stripe_event(f"e{n}", "payment_intent.succeeded", "acct",
                                                     amount_received=100))  # fmt: skip
            for _ in range(10):  # the broker's redeliveries
                try:
                    worker.deliver("ledger", push)
                    break
                except ServiceUnavailable:
                    nacks += 1
        assert nacks <= 1
        with engine.connect() as conn:
            found = accounts.get(conn, "acct")
            assert found is not None
            assert found.available == 600
    finally:
        engine.dispose()


def terminate(pg_server: TestServer, database: str, pids: list[int]) -> None:
    admin = pg_server.engine(database, db_pool_size=1)
    try:
        with admin.begin() as conn:
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:p AS int[])) AS pid"),
                {"p": pids},
            )

        def gone() -> bool:
            with admin.connect() as conn:
                alive = conn.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:p)"),
                    {"p": pids},
                ).scalar_one()
            return alive == 0

        wait_for(gone)
    finally:
        admin.dispose()
