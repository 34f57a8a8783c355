"""10,000 dead letters replayed at 500/s through the real task chain and broker."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support.postgres import TestServer
from tests.support.stack import admin, running_stack, wait_for

COUNT = 10_000
RATE = 500


def test_ten_thousand_at_five_hundred_per_second_nothing_lost(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO dead_letters (origin, subscription, message_id, source, event_id, "
                "event_type, data, attributes, error_message) "
                "SELECT 'worker', 'ledger', 'm' || n, 'stripe', 'evt_v' || n, 'customer.created', "
                """convert_to('{"type":"customer.created"}', 'UTF8'), """
                "jsonb_build_object('source', 'stripe', 'event_id', 'evt_v' || n, "
                "'event_type', 'customer.created'), 'bulk' "
                "FROM generate_series(1, :count) AS n"
            ),
            {"count": COUNT},
        )
    with (
        running_stack(pg_server, database, tmp_path) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=10)) as client,
    ):
        began = time.monotonic()
        body = {"filter": {"reason": "bulk"}, "reason": "volume", "max_per_second": RATE}
        started = client.post("/admin/dead-letters/replay", json=body).json()
        assert started["total"] == COUNT
        seen: list[int] = []

        def finished() -> bool:
            replay = client.get(f"/admin/replays/{started['replay_id']}").json()
            seen.append(replay["done"])
            return bool(replay["state"] == "done")

        wait_for(finished, timeout=120, interval=0.2)
        elapsed = time.monotonic() - began
    print(f"\nreplayed {COUNT} dead letters at {RATE}/s in {elapsed:.1f} s")
    assert seen == sorted(seen)  # progress never goes backwards
    assert seen[-1] == COUNT
    with engine.connect() as conn:
        states = dict(
            conn.execute(sa.text("SELECT state, count(*) FROM dead_letters GROUP BY 1")).all()
        )
        republished = conn.execute(
            sa.text(
                "SELECT count(DISTINCT attributes->>'hookyard_replay_of') FROM emulator.messages "
                "WHERE topic = 'events' AND attributes ? 'hookyard_replay_of'"
            )
        ).scalar_one()
    assert states == {"replayed": COUNT}
    assert republished == COUNT
    # The replay must honour its rate: 10,000 at 500/s cannot finish in under ~19 s.
    assert elapsed >= (COUNT / RATE) * 0.9
