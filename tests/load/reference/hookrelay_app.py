"""The end-to-end bench's reference peer: hookrelay 0.4 driven as its README describes
(FastAPI router enqueueing into `PostgresBackend`, a separate `Worker` process), applying
the same Stripe payments to its own balance table.

Runs only inside `.bench/venv` (tests/load/bench_env.py), started by tests/load/bench_e2e.py:

    python hookrelay_app.py init ACCOUNT_ID...   # hookrelay's table, balances, accounts at 0
    python hookrelay_app.py serve --port PORT    # uvicorn, one process
    python hookrelay_app.py work                 # Worker(batch 100, 8 concurrent, poll 0.1 s)

The database DSN (`postgresql+asyncpg://…?host=<socket dir>`) and the Stripe secret come
from the environment, never argv, so `ps` shows neither.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import signal
import time
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from hookrelay import RetryPolicy, WebhookEvent, Worker
from hookrelay.backends.postgres import PostgresBackend
from hookrelay.fastapi import create_webhook_router
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

DSN_ENV = "HOOKRELAY_BENCH_DSN"
SECRET_ENV = "HOOKRELAY_BENCH_STRIPE_SECRET"
TOLERANCE_S = 300
# The "tuned" worker: hookrelay's defaults are a batch of 10, one handler at a time.
BATCH_SIZE = 100
CONCURRENCY = 8
# How long an idle worker sleeps before claiming again; hookrelay's default is 1 s, which
# would add up to a second of idle tail to every run and flatter Hookyard.
POLL_INTERVAL_S = 0.1

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS balances (
         account_id text PRIMARY KEY,
         available bigint NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS applied_events (
         event_id text PRIMARY KEY,
         account_id text NOT NULL REFERENCES balances (account_id),
         amount bigint NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now())""",
]


def stripe_signature_ok(secret: bytes, body: bytes, headers: Mapping[str, str]) -> bool:
    """Stripe's scheme, as Hookyard checks it: `t=<unix>,v1=<hex>` where v1 is
    HMAC-SHA256(secret, f"{t}.{body}"), any v1 may match, |now - t| within the tolerance."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in headers.get("stripe-signature", "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or abs(time.time() - timestamp) > TOLERANCE_S:
        return False
    expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


def stripe_event_id(payload: dict[str, Any]) -> str | None:
    value = payload.get("id")
    return value if isinstance(value, str) else None


def engine() -> AsyncEngine:
    return create_async_engine(os.environ[DSN_ENV])


def create_app() -> FastAPI:
    secret = os.environ[SECRET_ENV].encode()
    backend = PostgresBackend(engine(), retry_policy=RetryPolicy(max_attempts=5))
    app = FastAPI()
    router = create_webhook_router(
        backend=backend,
        source="stripe",
        verify_signature=lambda body, headers: stripe_signature_ok(secret, body, headers),
        idempotency_key=stripe_event_id,
    )
    app.include_router(router, prefix="/webhooks/stripe")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def apply_payment(db: AsyncEngine, event: WebhookEvent) -> None:
    """The applied-events row and the balance change commit together, so a redelivery (a
    worker that died before its ack) finds the row and changes nothing."""
    payload = event.payload
    if payload.get("type") != "payment_intent.succeeded":
        return
    obj = payload["data"]["object"]
    account_id = obj["metadata"]["account_id"]
    params = {"e": payload["id"], "a": account_id, "m": int(obj["amount_received"])}
    async with db.begin() as conn:
        inserted = await conn.execute(
            text(
                "INSERT INTO applied_events (event_id, account_id, amount) VALUES (:e, :a, :m)"
                " ON CONFLICT (event_id) DO NOTHING"
            ),
            params,
        )
        if inserted.rowcount == 0:
            return
        updated = await conn.execute(
            text("UPDATE balances SET available = available + :m WHERE account_id = :a"), params
        )
        if updated.rowcount != 1:
            raise LookupError(f"unknown account {account_id!r}")


async def init(accounts: list[str]) -> None:
    db = engine()
    try:
        await PostgresBackend(db).init_schema()
        async with db.begin() as conn:
            for statement in SCHEMA:
                await conn.execute(text(statement))
            await conn.execute(
                text("INSERT INTO balances (account_id) VALUES (:a) ON CONFLICT DO NOTHING"),
                [{"a": account} for account in accounts],
            )
    finally:
        await db.dispose()


async def work() -> None:
    db = engine()
    backend = PostgresBackend(db, retry_policy=RetryPolicy(max_attempts=5))

    async def handle(event: WebhookEvent) -> None:
        await apply_payment(db, event)

    worker = Worker(
        backend, handle, batch_size=BATCH_SIZE, concurrency=CONCURRENCY,
        poll_interval=POLL_INTERVAL_S,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    try:
        await worker.run_forever()
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("init").add_argument("accounts", nargs="+")
    commands.add_parser("serve").add_argument("--port", type=int, required=True)
    commands.add_parser("work")
    args = parser.parse_args()
    if args.command == "init":
        asyncio.run(init(args.accounts))
    elif args.command == "serve":
        import uvicorn

        uvicorn.run(
            create_app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False
        )
    else:
        asyncio.run(work())


if __name__ == "__main__":
    main()
