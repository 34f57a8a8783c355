"""The contract between the admin API, which starts a replay, and the worker that runs it:
a chain of named tasks on queue `replays`, one batch each."""

from __future__ import annotations

import json
from datetime import datetime

from common.messaging.tasks import TaskRequest

REPLAYS_QUEUE = "replays"


def batch_task(replay_id: int, seq: int, not_before: datetime | None = None) -> TaskRequest:
    """Named by (replay, batch), so a retried batch cannot fork the chain."""
    return TaskRequest(
        queue=REPLAYS_QUEUE,
        name=f"replay-{replay_id}-{seq}",
        body=json.dumps({"replay_id": replay_id, "seq": seq}).encode(),
        headers={"Content-Type": "application/json"},
        schedule_time=not_before,
    )
