"""Ledger throughput of one worker process on embedded PostgreSQL, against pgbench running
the same statements: how much of the database's capacity the worker's Python path keeps.

The three run interleaved (in process, over HTTP, pgbench, then again), `BENCH_REPS` times
(3), on one database: each figure is the median (min-max) of its repetitions. Prints figures;
asserts nothing about speed. Everything runs on 127.0.0.1 / a Unix socket and stops by itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from common.config import Settings
from common.db import accounts, ledger_apply, migrate
from common.db.engine import create_db_engine
from common.envelope import build_envelope, parse_envelope
from common.logging import configure_logging
from hookyard.local_postgres import LocalPostgres, _bin_dir
from hookyard.stack import _create_database
from tests.load.report import Spread
from tests.support.stack import stripe_event
from workers.push import Worker

EVENTS = 2000
ACCOUNTS = 100
THREADS = 8
PGBENCH_SECONDS = 5

# What the worker sends for a payment, as it sends it: BEGIN, the ledger's statement
# (prepared, as the worker prepares it) and COMMIT. The statement is the worker's own text,
# with each parameter replaced by what the bench's payment would bind.
BENCH_VALUES = {
    "source": "'stripe'",
    "event_id": "('e' || :client_id || '-' || :evt)",
    "event_type": "'payment_intent.succeeded'",
    "subscription": "'ledger'",
    "message_id": "('e' || :client_id || '-' || :evt)",
    "body_sha256": "sha256(CAST('body' AS bytea))",
    "available": "1",
    "held": "0",
    "account_id": "('a' || :acct)",
    "currency": "'usd'",
    "kind": "'payment'",
    # pgbench would take any colon before a name, even in a literal, for a variable.
    "accounts": (
        "ARRAY['account' || ':' || 'a' || :acct || ':' || 'available',"
        " 'platform' || ':' || 'clearing']"
    ),
    "amounts": "ARRAY[1, -1]",
    "notify_kind": "'balance.updated'",
}


def pgbench_script(accounts: int) -> str:
    statement = re.sub(r":(\w+)", lambda m: BENCH_VALUES[m.group(1)], ledger_apply.SQL)
    return (
        f"\\set acct random(1, {accounts})\n"
        "\\set evt random(1, 2000000000)\n"
        f"BEGIN;\n{statement.strip()};\nCOMMIT;\n"
    )


@dataclass(frozen=True, slots=True)
class WorkerRep:
    """One repetition: each of the three, one after the other."""

    in_process: float
    """Events/s through `Worker.deliver`, no HTTP."""
    over_http: float
    """Events/s through `POST /pubsub/ledger`, token verified."""
    pgbench_tps: float
    pgbench_transactions: int


@dataclass(frozen=True, slots=True)
class WorkerFigures:
    """The run's figures, each the median (min-max) of its repetitions, for whoever writes
    them up."""

    threads: int
    accounts: int
    events: int
    """Per repetition, in process and over HTTP alike."""
    pgbench_seconds: int
    reps: list[WorkerRep]
    in_process: Spread
    over_http: Spread
    pgbench_tps: Spread

    @classmethod
    def of(cls, reps: list[WorkerRep]) -> WorkerFigures:
        return cls(
            threads=THREADS, accounts=ACCOUNTS, events=EVENTS, pgbench_seconds=PGBENCH_SECONDS,
            reps=reps,
            in_process=Spread.of([r.in_process for r in reps]),
            over_http=Spread.of([r.over_http for r in reps]),
            pgbench_tps=Spread.of([r.pgbench_tps for r in reps]),
        )  # fmt: skip

    @property
    def in_process_share(self) -> float:
        return self.in_process.median / self.pgbench_tps.median

    @property
    def http_share(self) -> float:
        return self.over_http.median / self.pgbench_tps.median


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


def in_process(worker: Worker, tag: str) -> float:
    bodies = envelopes(tag)
    began = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda raw: worker.deliver("ledger", parse_envelope(raw)), bodies))
    return rate(len(bodies), began)


def over_http(url: str, headers: dict[str, str], tag: str) -> float:
    bodies = envelopes(tag)
    began = time.perf_counter()
    with httpx.Client(limits=httpx.Limits(max_connections=THREADS)) as client, \
            ThreadPoolExecutor(THREADS) as pool:  # fmt: skip
        statuses = list(
            pool.map(lambda raw: client.post(url, content=raw, headers=headers).status_code, bodies)
        )
    figure = rate(len(bodies), began)
    assert set(statuses) == {204}, set(statuses)
    return figure


def pgbench(server: LocalPostgres, script: Path) -> tuple[float, int]:
    """(tx/s, transactions) of pgbench running `script` on THREADS clients."""
    result = subprocess.run(
        [str(_bin_dir() / "pgbench"), "-n", "-M", "prepared", "-h", str(server.socket_dir),
         "-U", "postgres", "-c", str(THREADS), "-j", "2", "-T", str(PGBENCH_SECONDS),
         "-f", str(script), "bench"],
        env={**os.environ, "PGPASSWORD": server.password},
        capture_output=True, text=True, timeout=PGBENCH_SECONDS + 60, check=True,
    )  # fmt: skip
    transactions = pgbench_figure(result.stdout, "number of transactions actually processed:")
    return pgbench_figure(result.stdout, "tps ="), int(transactions)


@contextlib.contextmanager
def serving(server: LocalPostgres, root: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The `worker` target as deployed: functions-framework's gunicorn, one worker process
    with THREADS threads, in a process of its own (the client's threads must not share its
    interpreter lock), verifying the tokens pushes carry against the certificates a tiny
    issuer serves, as the local broker's are: (push URL, push headers)."""
    from common.service_identity import LOCAL_CERTS_PATH
    from hookyard.local_identity import LocalIdentity
    from hookyard.server import HardenedWSGIServer, create_app
    from hookyard.supervisor import MAIN_PY
    from tests.load.bench_ingest import FunctionServer

    mounts: dict[str, Any] = {}
    issuer = HardenedWSGIServer("127.0.0.1", 0, create_app(mounts),
                                max_connections=16, read_timeout_s=30)  # fmt: skip
    issuer_url = f"http://127.0.0.1:{issuer.server_port}"
    identity = LocalIdentity(root / "secrets", issuer_url)
    mounts["emulator"] = identity.handle_certs
    thread = threading.Thread(target=issuer.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    env = {
        **os.environ,
        "HOOKYARD_ENV": "local", "HOOKYARD_DATABASE_URL": server.url("bench"),
        "HOOKYARD_EMULATOR_URL": issuer_url, "HOOKYARD_DATA_DIR": str(root),
        "HOOKYARD_LOG_LEVEL": "WARNING", "HOOKYARD_SCHEDULER_ENABLED": "false",
    }  # fmt: skip
    worker = FunctionServer("worker", MAIN_PY, env, {"WORKERS": "1", "THREADS": str(THREADS)})
    try:
        worker.wait_ready("/health/live")
        assert httpx.get(issuer_url + LOCAL_CERTS_PATH).status_code == 200
        push = {"Authorization": f"Bearer {identity.token('pubsub')}",
                "Content-Type": "application/json"}  # fmt: skip
        yield f"{worker.url}/pubsub/ledger", push
    finally:
        worker.stop()
        issuer.shutdown()
        thread.join()
        issuer.server_close()


def main() -> WorkerFigures:
    # Per-event INFO lines would measure the terminal; production ships them asynchronously.
    configure_logging("WARNING")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    count = int(os.environ.get("BENCH_REPS", "3"))
    root = Path(tempfile.mkdtemp(prefix="hookyard-bench-worker-"))
    server = LocalPostgres(root / "pg")
    server.start()
    reps: list[WorkerRep] = []
    print(f"ledger events/s, one worker process, {THREADS} threads, {ACCOUNTS} accounts; "
          f"{EVENTS} events a repetition, pgbench {PGBENCH_SECONDS} s:")  # fmt: skip
    try:
        _create_database(server.url(), "bench")
        engine = create_db_engine(Settings(db_pool_size=THREADS), server.url("bench"))
        migrate.upgrade(engine)
        with engine.begin() as conn:
            for n in range(1, ACCOUNTS + 1):
                accounts.create(conn, f"a{n}", "usd", None)
        script = root / "payment.sql"
        script.write_text(pgbench_script(ACCOUNTS))
        worker = Worker(engine, "bench")
        try:
            with serving(server, root) as (url, push):
                # In process, over HTTP, pgbench, then again: all three see the machine alike.
                for rep in range(1, count + 1):
                    direct = in_process(worker, f"inproc{rep}")
                    http = over_http(url, push, f"http{rep}")
                    tps, transactions = pgbench(server, script)
                    reps.append(WorkerRep(direct, http, tps, transactions))
                    print(f"  rep {rep}: in-process {direct:7.0f} events/s, over HTTP "
                          f"{http:7.0f} events/s, pgbench {tps:7.0f} tx/s "
                          f"({transactions} in {PGBENCH_SECONDS} s)", flush=True)  # fmt: skip
        finally:
            engine.dispose()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    figures = WorkerFigures.of(reps)
    print(f"median (min-max) of {len(reps)}:")
    print(f"  in-process Worker.deliver:      {figures.in_process} events/s")
    print(f"  over HTTP POST /pubsub/ledger:  {figures.over_http} events/s")
    print(f"  pgbench, same SQL, {THREADS} clients:  {figures.pgbench_tps} tx/s")
    kept = f"{figures.in_process_share:.0%} (in-process) / {figures.http_share:.0%} (HTTP)"
    print(f"  the worker achieves {kept} of the raw SQL rate")
    return figures


def pgbench_figure(output: str, label: str) -> float:
    """The number after `label` on pgbench's summary line that starts with it."""
    line = next(line for line in output.splitlines() if line.startswith(label))
    found = re.match(r"\s*([0-9.]+)", line.removeprefix(label))
    if found is None:
        raise ValueError(f"pgbench printed no figure after {label!r}: {line!r}")
    return float(found.group(1))


if __name__ == "__main__":
    main()
