"""Cloud Scheduler ticks through the real cron function, task emulator and local scheduler."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from common.config import Settings
from common.db import outbox
from hookyard.cli import app
from hookyard.scheduler import scheduler_headers
from hookyard.stack import LocalStack
from tests.support.postgres import TestServer
from tests.support.receiver import receiver
from tests.support.stack import admin, running_stack, service_headers, wait_for


def _tick(stack: LocalStack, client: httpx.Client, job: str, at: str) -> httpx.Response:
    headers = {
        **scheduler_headers(job, datetime.now(UTC)), "X-CloudScheduler-ScheduleTime": at,
        **service_headers(stack, "cron"),
    }  # fmt: skip
    return client.post(f"/cron/{job}", headers=headers)


def _job_tasks(engine: Engine, prefix: str) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT name FROM emulator.tasks WHERE queue = 'jobs' AND name LIKE :p ORDER BY 1"
            ),
            {"p": prefix + "%"},
        ).scalars()
        return list(rows)


def test_one_task_per_schedule_time(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path
) -> None:
    with (
        running_stack(pg_server, database, tmp_path) as stack,
        httpx.Client(base_url=stack.url, timeout=60) as client,
    ):
        assert stack.tasks is not None
        stack.tasks.pause("jobs")  # keep the tasks visible; running them is test_jobs' business
        first = _tick(stack, client, "reconcile", "2026-10-16T05:00:00-07:00")
        assert first.status_code == 202, first.text
        assert first.json() == {
            "status": "scheduled", "job": "reconcile",
            "schedule_time": "2026-10-16T12:00:00Z", "task": "reconcile-20261016T120000Z",
        }  # fmt: skip
        again = _tick(stack, client, "reconcile", "2026-10-16T12:00:00Z")
        assert again.status_code == 200
        assert again.json()["status"] == "already scheduled"
        assert _tick(stack, client, "reconcile", "2026-10-16T13:00:00Z").status_code == 202
        assert _job_tasks(engine, "reconcile-") == [
            "reconcile-20261016T120000Z", "reconcile-20261016T130000Z",
        ]  # fmt: skip
        scheduler = service_headers(stack, "cron")
        assert client.post("/cron/nope", headers=scheduler).status_code == 404
        assert client.get("/cron/reconcile", headers=scheduler).status_code == 405
        bad = _tick(stack, client, "reconcile", "noon")
        assert bad.status_code == 400
        assert bad.json()["field"] == "X-CloudScheduler-ScheduleTime"


def test_the_local_scheduler_fires_outbox_relay_on_its_schedule(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path
) -> None:
    """Every two seconds instead of every minute, through the same path Scheduler uses."""
    with receiver() as hook:
        settings = Settings(
            database_url=pg_server.url_for(database), port=0, pubsub_port=0,
            data_dir=tmp_path / "data", schedule_overrides={"outbox-relay": "* * * * * */2"},
            notify_allow_loopback=True,
        )  # fmt: skip
        stack = LocalStack(settings)
        stack.start()
        try:
            with admin(httpx.Client(base_url=stack.url, timeout=60)) as client:
                account = {"currency": "usd", "notify_url": hook.url}
                client.put("/admin/accounts/orphan", json=account)
            # A change committed by a worker that died before relaying it:
            with engine.begin() as conn:
                row_id = outbox.add(conn, "orphan", "balance.updated", {"type": "balance.updated"})
                conn.execute(
                    sa.text(
                        "UPDATE outbox SET created_at = now() - interval '5 minutes' WHERE id = :id"
                    ),
                    {"id": row_id},
                )
            wait_for(lambda: len(hook.received) == 1, timeout=60)
            ticks = wait_for(
                lambda: len(names := _job_tasks(engine, "outbox-relay-")) >= 2 and names,
                timeout=60,
            )
        finally:
            stack.stop()
    assert hook.received[0].headers["Webhook-Id"] == str(row_id)
    assert all(name.startswith("outbox-relay-2") for name in ticks)


@pytest.mark.timeout(600)
def test_daily_balances_fans_out_a_thousand_accounts_within_the_rate_limit(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path
) -> None:
    accounts = 1000
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO accounts (id, currency, created_at) SELECT 'acct-' || n, 'usd', "
                "'2026-11-01T00:00:00Z' FROM generate_series(1, :n) AS n"
            ),
            {"n": accounts},
        )
    with (
        running_stack(pg_server, database, tmp_path) as stack,
        httpx.Client(base_url=stack.url, timeout=60) as client,
    ):
        began = datetime.now(UTC)
        assert _tick(stack, client, "daily-balances", "2026-11-23T00:05:00Z").status_code == 202
        assert _tick(stack, client, "daily-balances", "2026-11-23T00:05:00Z").status_code == 200

        def written() -> int:
            with engine.connect() as conn:
                query = "SELECT count(*) FROM daily_balances WHERE date = '2026-11-22'"
                return int(conn.execute(sa.text(query)).scalar_one())

        wait_for(lambda: written() == accounts, timeout=300, interval=0.2)
        with engine.connect() as conn:
            tasks, last = conn.execute(
                sa.text(
                    "SELECT count(*), max(first_attempt_at) FROM emulator.tasks "
                    "WHERE queue = 'statements'"
                )
            ).one()
    queue = stack.topology.queue("statements")
    assert queue is not None
    limits = queue.rate_limits
    rate, burst, concurrent = (
        limits.max_dispatches_per_second,
        limits.burst,
        limits.max_concurrent_dispatches,
    )
    assert tasks == accounts  # one named task per account, however often the tick came
    # Dispatches may not outrun the token bucket. No statements task exists before the tick,
    # when the bucket held at most `burst` tokens plus what one claim had reserved (at most
    # `concurrent`): the rest take their time to refill. Claim times are the emulator's own,
    # and a busy machine only makes them later. 10 ms for the wall clock of two processes.
    least = timedelta(seconds=(accounts - burst - concurrent) / rate - 0.01)
    assert last >= began + least


def test_cron_run_by_hand_presents_the_schedulers_token(
    pg_server: TestServer, database: str, engine: Engine, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """`hookyard cron run` signs with the key the running stack keeps under its data dir."""
    runner = CliRunner()
    with running_stack(pg_server, database, tmp_path) as stack:
        assert stack.tasks is not None
        stack.tasks.pause("jobs")
        args = ["cron", "run", "reconcile", "--at", "2030-05-01T10:00:00Z", "--url", stack.url]
        monkeypatch.setenv("HOOKYARD_DATA_DIR", str(tmp_path / "elsewhere"))
        lost = runner.invoke(app, args)
        assert lost.exit_code == 1
        assert "no local signing key" in lost.output
        monkeypatch.setenv("HOOKYARD_DATA_DIR", str(tmp_path / "data"))
        ran = runner.invoke(app, args)
        assert ran.exit_code == 0, ran.output
        assert any(line.startswith("202 ") for line in ran.output.splitlines()), ran.output
        assert _job_tasks(engine, "reconcile-") == ["reconcile-20300501T100000Z"]
