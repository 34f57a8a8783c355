"""Event search over 100,000 stored events: a JSON-path query through the SQL the admin API
runs (`common.db.events.search`), against the same query with index scans turned off (the
sequential scan an unindexed log would need), measured in the same run.

The rows are the shipped trigger fixtures of all six sources, filled with varied ids,
accounts and amounts, multiplied in PostgreSQL with INSERT ... SELECT over generate_series.
Prints figures and the plans; asserts nothing about speed. Runs on a Unix socket and stops
by itself.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.config import Settings
from common.db import events, migrate
from common.db.engine import create_db_engine
from common.db.event_search import EventQuery, PathMatch, where
from common.logging import configure_logging
from common.topology import get_topology
from common.webhook_body import payload_document
from hookyard import trigger
from hookyard.local_postgres import LocalPostgres
from hookyard.stack import _create_database
from tests.load.report import Spread

ROWS = 100_000
ACCOUNTS = 4_000
"""Each account's id is in about five of the Stripe rows: a JSON-path match of a handful."""
VARIANTS = 40
"""Filled copies of each fixture; the rows cycle over them with fresh ids and accounts."""
QUERIES = 200
REFERENCE_QUERIES = 5
PATH = "data.object.metadata.account_id=acct_123"
TARGET_MS = 50.0


@dataclass(frozen=True, slots=True)
class SearchFigures:
    p50_ms: float
    p99_ms: float
    matches: int
    reference_ms: Spread
    """The same query as a sequential scan (bitmap and index scans off)."""

    @property
    def ratio(self) -> float:
        return self.reference_ms.median / self.p50_ms


def templates() -> list[tuple[str, str | None, str]]:
    """(source, event type, JSON document) for every shipped fixture, filled VARIANTS times."""
    topology = get_topology()
    out = []
    for source_name, fixtures in sorted(trigger.catalogue().items()):
        source = topology.source(source_name)
        assert source is not None
        for name in sorted(fixtures):
            fixture = trigger.load(source_name, name)
            for n in range(VARIANTS):
                fill = trigger.Fill(
                    account="acct_0" if "account" in fixture.fills else None,
                    amount=100 + n if "amount" in fixture.fills else None,
                )
                built = trigger.build(fixture, source, fill=fill)
                document = payload_document(built.body, built.media_type)
                out.append((source_name, built.event_type, json.dumps(document)))
    return out


_FILL = sa.text(
    """
    INSERT INTO event_log (source, event_id, event_type, received_at, content_type,
                           body_sha256, body_bytes, message_id, payload, payload_json,
                           headers, search)
    SELECT t.source, t.source || '-' || g, t.event_type,
           now() - make_interval(secs => g), 'application/json',
           sha256(convert_to(d.doc::text, 'UTF8')), octet_length(d.doc::text), 'm' || g,
           convert_to(d.doc::text, 'UTF8'), d.doc, '{"user-agent": "bench"}',
           jsonb_to_tsvector('simple', d.doc, '["string", "numeric"]')
    FROM generate_series(1, :rows) AS g
    JOIN bench_templates AS t ON t.n = mod(g, :templates)
    CROSS JOIN LATERAL (SELECT CASE
        WHEN t.doc #> '{data,object,metadata,account_id}' IS NOT NULL
        THEN jsonb_set(jsonb_set(t.doc, '{id}', to_jsonb('evt_' || g)),
                       '{data,object,metadata,account_id}',
                       to_jsonb('acct_' || mod(g, :accounts)))
        ELSE t.doc END AS doc) AS d
    """
)


def fill(conn: Connection) -> None:
    rows = templates()
    conn.execute(sa.text("CREATE TEMP TABLE bench_templates (n int, source text,"
                         " event_type text, doc jsonb)"))  # fmt: skip
    conn.execute(
        sa.text("INSERT INTO bench_templates VALUES (:n, :source, :type, CAST(:doc AS jsonb))"),
        [{"n": n, "source": s, "type": t, "doc": d} for n, (s, t, d) in enumerate(rows)],
    )
    conn.execute(_FILL, {"rows": ROWS, "templates": len(rows), "accounts": ACCOUNTS})
    print(f"  {ROWS:,} rows from {len(rows)} filled fixtures of "
          f"{len({s for s, _, _ in rows})} sources")  # fmt: skip


def explain(conn: Connection, query: EventQuery) -> str:
    clause, params = where(query, get_topology().handlers)
    plan = conn.execute(
        sa.text(f"EXPLAIN SELECT e.id FROM event_log AS e WHERE {clause} ORDER BY e.id LIMIT 101"),
        params,
    ).all()
    return "\n".join(f"    {row[0]}" for row in plan)


def timed(conn: Connection, query: EventQuery) -> tuple[float, int]:
    began = time.perf_counter()
    found = events.search(conn, query, get_topology().handlers)
    return (time.perf_counter() - began) * 1000, len(found)


def main() -> SearchFigures:
    configure_logging("WARNING")
    root = Path(tempfile.mkdtemp(prefix="hookyard-bench-search-"))
    server = LocalPostgres(root / "pg")
    server.start()
    query = EventQuery(paths=(PathMatch.parse(PATH),), limit=101)
    try:
        _create_database(server.url(), "bench")
        engine = create_db_engine(Settings(), server.url("bench"))
        try:
            migrate.upgrade(engine)
            began = time.monotonic()
            with engine.begin() as conn:
                fill(conn)
            with engine.begin() as conn:
                conn.execute(sa.text("ANALYZE event_log"))
            print(f"  filled and analysed in {time.monotonic() - began:.0f} s")
            with engine.connect() as conn:
                print(f"plan, path {PATH}:\n{explain(conn, query)}")
                for text in ("refs/heads/main", "Hookyard tour payment"):
                    words = EventQuery(text=text, limit=101)
                    print(f"plan, q={text}:\n{explain(conn, words)}")
                timed(conn, query)  # warm the cache, as a running service has it
                runs = [timed(conn, query) for _ in range(QUERIES)]
                conn.rollback()
                with conn.begin():
                    conn.execute(sa.text("SET LOCAL enable_bitmapscan = off"))
                    conn.execute(sa.text("SET LOCAL enable_indexscan = off"))
                    reference = [timed(conn, query)[0] for _ in range(REFERENCE_QUERIES)]
        finally:
            engine.dispose()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    times = sorted(ms for ms, _ in runs)
    figures = SearchFigures(
        p50_ms=statistics.median(times),
        p99_ms=times[min(len(times) - 1, int(len(times) * 0.99))],
        matches=runs[0][1],
        reference_ms=Spread.of(reference),
    )
    print(f"JSON path {PATH} over {ROWS:,} events, {QUERIES} queries "
          f"({figures.matches} matches each), {datetime.now(UTC):%Y-%m-%d}:")  # fmt: skip
    print(f"  p50 {figures.p50_ms:.2f} ms, p99 {figures.p99_ms:.2f} ms "
          f"(target < {TARGET_MS:.0f} ms p50)")  # fmt: skip
    print(f"  same query as a sequential scan: {figures.reference_ms} ms "
          f"({figures.ratio:,.0f}x slower)")  # fmt: skip
    return figures


if __name__ == "__main__":
    os.environ.setdefault("HOOKYARD_LOG_LEVEL", "WARNING")
    main()
