"""Ledger throughput of one worker process on embedded PostgreSQL, against pgbench running
the same statements: how much of the database's capacity the worker's Python path keeps.

Prints figures; asserts nothing about speed. Everything runs on 127.0.0.1 / a Unix socket
and stops by itself.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

from common.config import Settings
from common.db import accounts, migrate
from common.db.engine import create_db_engine
from common.envelope import build_envelope, parse_envelope
from common.logging import configure_logging
from hookyard.local_postgres import LocalPostgres, _bin_dir
from hookyard.stack import _create_database
from tests.support.stack import stripe_event
from workers.push import Worker

EVENTS = 3000
ACCOUNTS = 100
THREADS = 8
PGBENCH_SECONDS = 10

# The statements a payment costs the worker (inbox claim, balance update, ledger write).
PGBENCH_SCRIPT = """\\set a random(1, {accounts})
\\set e random(1, 2000000000)
BEGIN;
INSERT INTO inbox (source, event_id, event_type, subscription, message_id, outcome)
  VALUES ('bench', 'e' || :client_id || '-' || :e, 'payment_intent.succeeded', 'ledger', 'm',
          'applied')
  ON CONFLICT (source, event_id) DO NOTHING RETURNING 1;
UPDATE accounts SET available = available + 1, held = held + 0, updated_at = now()
  WHERE id = 'a' || :a AND currency = 'usd' RETURNING id;
WITH tx AS (
  INSERT INTO ledger_transactions (account_id, kind, currency, source, event_id)
  VALUES ('a' || :a, 'payment', 'usd', 'bench', 'e' || :client_id || '-' || :e) RETURNING id)
INSERT INTO postings (transaction_id, ledger_account, amount, currency)
  SELECT tx.id, p.l, p.m, 'usd' FROM tx,
    unnest(ARRAY['account:a' || :a || ':available', 'platform:clearing'], ARRAY[1, -1]) AS p (l, m);
COMMIT;
"""


def envelopes(tag: str) -> list[bytes]:
    out = []
    for i in range(EVENTS):
        event_id = f"evt_{tag}_{i}"
        body = stripe_event(event_id, "payment_intent.succeeded", f"a{random.randint(1, ACCOUNTS)}",
                            amount_received=1)  # fmt: skip
        out.append(json.dumps(build_envelope(
            project="bench", subscription="ledger", message_id=event_id, data=body,
            attributes={"source": "stripe", "event_id": event_id},
            publish_time=datetime.now(UTC),
        )).encode())  # fmt: skip
    return out


def rate(count: int, began: float) -> float:
    return count / (time.perf_counter() - began)


def main() -> None:
    # Per-event INFO lines would measure the terminal; production ships them asynchronously.
    configure_logging("WARNING")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="hookyard-bench-worker-"))
    server = LocalPostgres(root / "pg")
    server.start()
    try:
        _create_database(server.url(), "bench")
        engine = create_db_engine(Settings(db_pool_size=THREADS), server.url("bench"))
        migrate.upgrade(engine)
        with engine.begin() as conn:
            for n in range(1, ACCOUNTS + 1):
                accounts.create(conn, f"a{n}", "usd", None)
        worker = Worker(engine, "bench")

        bodies = envelopes("inproc")
        began = time.perf_counter()
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda raw: worker.deliver("ledger", parse_envelope(raw)), bodies))
        in_process = rate(len(bodies), began)

        from common.service_identity import verifier_for
        from hookyard.local_identity import LocalIdentity
        from hookyard.server import HardenedWSGIServer, create_app

        mounts = {"pubsub": worker.handle}
        http = HardenedWSGIServer("127.0.0.1", 0, create_app(mounts),
                                  max_connections=256, read_timeout_s=30)  # fmt: skip
        # Pushes carry a token the worker verifies, as the local broker's do.
        stack_url = f"http://127.0.0.1:{http.server_port}"
        identity = LocalIdentity(root / "secrets", stack_url)
        mounts["emulator"] = identity.handle_certs
        worker.verifier = verifier_for("pubsub", Settings(), stack_url)
        push = {"Authorization": f"Bearer {identity.token('pubsub')}",
                "Content-Type": "application/json"}  # fmt: skip
        import threading

        thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.1})
        thread.start()
        try:
            bodies = envelopes("http")
            url = f"http://127.0.0.1:{http.server_port}/pubsub/ledger"
            began = time.perf_counter()
            with httpx.Client(limits=httpx.Limits(max_connections=THREADS)) as client, \
                    ThreadPoolExecutor(THREADS) as pool:  # fmt: skip
                statuses = list(
                    pool.map(
                        lambda raw: client.post(url, content=raw, headers=push).status_code, bodies
                    )
                )
            over_http = rate(len(bodies), began)
            assert set(statuses) == {204}, set(statuses)
        finally:
            http.shutdown()
            thread.join()
            http.server_close()
        engine.dispose()

        script = root / "payment.sql"
        script.write_text(PGBENCH_SCRIPT.format(accounts=ACCOUNTS))
        result = subprocess.run(
            [str(_bin_dir() / "pgbench"), "-n", "-h", str(server.socket_dir), "-U", "postgres",
             "-c", str(THREADS), "-j", "2", "-T", str(PGBENCH_SECONDS), "-f", str(script), "bench"],
            env={**os.environ, "PGPASSWORD": server.password},
            capture_output=True, text=True, timeout=PGBENCH_SECONDS + 60, check=True,
        )  # fmt: skip
        tps = next(
            float(line.split("=")[1].split()[0])
            for line in result.stdout.splitlines()
            if line.startswith("tps =")
        )
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"ledger events/s, one worker process, {THREADS} threads, {ACCOUNTS} accounts:")
    print(f"  in-process Worker.deliver:      {in_process:8.0f} events/s ({EVENTS} events)")
    print(f"  over HTTP POST /pubsub/ledger:  {over_http:8.0f} events/s ({EVENTS} events)")
    print(f"  pgbench, same SQL, {THREADS} clients:  {tps:8.0f} tx/s ({PGBENCH_SECONDS} s)")
    kept = f"{in_process / tps:.0%} (in-process) / {over_http / tps:.0%} (HTTP)"
    print(f"  the worker achieves {kept} of the raw SQL rate")


if __name__ == "__main__":
    main()
