"""The functions-framework `worker` target in main.py, served over a real socket."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
from flask import Flask, request
from sqlalchemy.engine import Engine
from werkzeug.serving import make_server

import main
from common.db.engine import set_engine
from workers import service


@pytest.fixture
def worker_url(engine: Engine) -> Iterator[str]:
    set_engine(engine)
    for cached in (service._worker, service._tasks, service._health):
        cached.cache_clear()
    app = Flask("worker")
    app.add_url_rule(
        "/<path:path>", "worker",
        lambda path: main.worker(request._get_current_object()),  # type: ignore[attr-defined]
        methods=["GET", "POST"],
    )  # fmt: skip
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=60)
        server.server_close()
        set_engine(None)


def test_worker_target_serves_push_tasks_and_health(worker_url: str) -> None:
    with httpx.Client(base_url=worker_url, timeout=60) as client:
        assert client.get("/health/ready").status_code == 200
        bad_push = client.post("/pubsub/ledger", content=b"{}")
        assert bad_push.status_code == 400
        assert bad_push.json()["detail"] == "push body has no message object"
        missing_task = client.post("/tasks/notifications", json={"outbox_id": 10**9},
                                   headers={"X-CloudTasks-TaskRetryCount": "0"})  # fmt: skip
        assert missing_task.status_code == 204  # permanent: dead-lettered, then acknowledged
        assert client.post("/tasks/nope", json={}).status_code == 404
        assert client.get("/elsewhere").status_code == 404
