"""10,000 dead letters replayed at 500/s through the real task chain and broker: nothing lost,
progress never goes backwards, and the replay never runs faster than its rate allows. How
long it takes is a figure for `make bench` (`tests/load/bench_emulators.py`), not a verdict.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support.dead_letter_seeds import seed_dead_letters
from tests.support.postgres import TestServer
from tests.support.stack import admin, running_stack, wait_for

COUNT = 10_000
RATE = 500
# The replay takes COUNT / RATE = 20 s on an idle machine; only a hang comes near this.
HANG_S = 600

pytestmark = pytest.mark.timeout(HANG_S + 300)


def test_ten_thousand_at_five_hundred_per_second_nothing_lost(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path
) -> None:
    seed_dead_letters(engine, COUNT, "bulk")
    with (
        running_stack(pg_server, database, tmp_path) as stack,
        admin(httpx.Client(base_url=stack.url, timeout=60)) as client,
    ):
        body = {"filter": {"reason": "bulk"}, "reason": "volume", "max_per_second": RATE}
        started = client.post("/admin/dead-letters/replay", json=body).json()
        assert started["total"] == COUNT
        seen: list[int] = []

        def finished() -> bool:
            replay = client.get(f"/admin/replays/{started['replay_id']}").json()
            seen.append(replay["done"])
            return bool(replay["state"] == "done")

        wait_for(finished, timeout=HANG_S, interval=0.2)
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
        created = conn.execute(
            sa.text("SELECT created_at FROM replays WHERE id = :id"), {"id": started["replay_id"]}
        ).scalar_one()
        published = conn.execute(
            sa.text(
                "SELECT publish_time FROM emulator.messages "
                "WHERE topic = 'events' AND attributes ? 'hookyard_replay_of' ORDER BY 1"
            )
        ).scalars()
        # Each batch of RATE is scheduled a second after the previous one started, and the
        # first starts after the replay was created: the n-th message (from 0) cannot be
        # published before n // RATE seconds after that. Both instants are the server's own
        # records, and a busy machine only makes publishes later. 10 ms for the wall clock
        # read by two processes.
        early = [
            n
            for n, at in enumerate(published)
            if at < created + timedelta(seconds=n // RATE) - timedelta(milliseconds=10)
        ]
    assert states == {"replayed": COUNT}
    assert republished == COUNT
    assert not early, f"{len(early)} messages republished faster than {RATE}/s, first #{early[0]}"
