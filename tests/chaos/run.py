"""`make chaos [EVENTS=10000]`: the local stack in its production shape (each target and the
emulators a process of their own, embedded PostgreSQL) driven with Stripe-style traffic while
its parts are killed, slowed and made to fail, then checked from outside.

Traffic: payments, cumulative refunds that grow and arrive out of order, payouts, disputes
opened and won, lost or left open, types the ledger ignores, across 100 accounts; a fifth of
the events sent twice and some three times, shuffled, from many threads; poison inputs and
events for unknown accounts mixed in. Senders retry a 5xx or a refused connection, as Stripe
does, until they get an answer.

Faults, each at least twice, at moments drawn from the seed: SIGKILL of the worker's process
group, of the emulators' process (the Pub/Sub and Cloud Tasks emulators), and of PostgreSQL
(restarted after a pause); a lock held on `accounts` from another session (a slow database);
and all along, a tenth of push deliveries failing transiently in the worker (a test-only
hook, tests/chaos/inject/sitecustomize.py), half of them after their effect committed.

Then it waits for the stack to go quiet and checks (tests/chaos/check.py) with its own SQL and
its own model of the ledger. Every log line the stack wrote is kept in a file and searched for
every secret and signature the run used. Exit status 0 only when nothing was lost, applied
twice or left inconsistent.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.chaos.check import Verdict, verdict
from tests.chaos.plan import ACCOUNTS, CURRENCY, Event, Plan, make_plan
from tests.support.secret_scan import find_secrets, stack_secrets

INJECT = Path(__file__).with_name("inject")
FAIL_SHARE = 0.1
THREADS = 16
KINDS = ("kill-worker", "kill-emulators", "kill-postgres", "slow-database")
FAULTS_PER_KIND = 2
POSTGRES_PAUSE_S = (1.0, 4.0)
LOCK_HELD_S = (3.0, 8.0)
LOCK_RETRY_S = 120.0
"""How long the slow-database fault keeps trying to take its lock while PostgreSQL is down."""
SEND_GIVE_UP_S = 180.0
"""A sender that has had no answer for this long stops retrying (counted as never accepted)."""
QUIET_POLLS = 5


@dataclass
class Tally:
    sent: int = 0
    accepted: list[Event] = field(default_factory=list)
    accepted_sends: int = 0
    refused: Counter[int] = field(default_factory=Counter)
    refused_valid: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    signatures: set[str] = field(default_factory=set)
    echoed: list[str] = field(default_factory=list)
    """Responses that carried the request's signature or the secret back."""
    lock: threading.Lock = field(default_factory=threading.Lock)


def _signed(body: bytes, secret: str) -> dict[str, str]:
    from common.signatures.signing import sign_headers

    return {
        **sign_headers("stripe", body, secret, now=int(time.time())),
        "Content-Type": "application/json",
    }


def _send(client: httpx.Client, url: str, event: Event, secret: str, tally: Tally) -> None:
    give_up = time.monotonic() + SEND_GIVE_UP_S
    pause = 0.1
    while True:
        try:
            headers = _signed(event.body, secret)
            response = client.post(url, content=event.body, headers=headers)
            status = response.status_code
            signature = headers["Stripe-Signature"].rpartition("v1=")[2]
            with tally.lock:
                tally.signatures.add(signature)
                if signature in response.text or secret in response.text:
                    tally.echoed.append(f"{event.event_id}: {status}")
        except httpx.HTTPError:
            status = 0
        if 200 <= status < 300:
            with tally.lock:
                tally.accepted.append(event)
                tally.accepted_sends += 1
            return
        if 400 <= status < 500:
            with tally.lock:
                tally.refused[status] += 1
                if not event.poison:
                    tally.refused_valid.append(f"{event.event_id}: {status}")
            return
        if time.monotonic() > give_up:
            with tally.lock:
                tally.given_up.append(event.event_id)
            return
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


class Faults:
    """Fires each planned fault once the traffic has reached its moment."""

    def __init__(
        self,
        stack: object,
        engine: Engine,
        plan: Plan,
        rng: random.Random,
        tally: Tally,
        say: Callable[[str], None],
    ) -> None:
        self._say = say
        self._stack = stack
        self._engine = engine
        self._rng = rng
        self._tally = tally
        total = self._total = len(plan.sends)
        moments = [
            (rng.uniform(0.1, 0.9) * total, kind) for kind in KINDS for _ in range(FAULTS_PER_KIND)
        ]
        self.schedule = sorted(moments)
        self._lock_threads: list[threading.Thread] = []

    def run(self, done: threading.Event) -> None:
        for moment, kind in self.schedule:
            while self._tally.sent < moment and not done.is_set():
                time.sleep(0.05)
            self.fire(kind)
        for thread in self._lock_threads:
            thread.join()

    def fire(self, kind: str) -> None:
        self._say(f"chaos: {kind} at send {self._tally.sent} of {self._total}")
        match kind:
            case "kill-worker":
                self._kill_target("worker")
            case "kill-emulators":
                self._kill_target("emulators")
            case "kill-postgres":
                self._kill_postgres()
            case "slow-database":
                # Counted by the thread once the lock is held.
                thread = threading.Thread(target=self._hold_lock, name="chaos-lock")
                thread.start()
                self._lock_threads.append(thread)
                return
        self._tally.faults[kind] += 1

    def _kill_target(self, name: str) -> None:
        supervisor = self._stack.supervisor  # type: ignore[attr-defined]
        target = supervisor.by_name(name)
        if target.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(target.process.pid, signal.SIGKILL)

    def _kill_postgres(self) -> None:
        postgres = self._stack.postgres  # type: ignore[attr-defined]
        pid = int((postgres.pgdata / "postmaster.pid").read_text().split()[0])
        family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        for process in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(family, timeout=60)
        time.sleep(self._rng.uniform(*POSTGRES_PAUSE_S))
        postgres.start()

    def _hold_lock(self) -> None:
        """Holds the lock from another session. While PostgreSQL is down (killed at the same
        moment) connecting fails, pg8000 sometimes with a bare OSError: it retries, so that
        the fault does happen, and counts it once the lock is held."""
        held = False
        give_up = time.monotonic() + LOCK_RETRY_S
        while not held and time.monotonic() < give_up:
            try:
                with self._engine.connect() as conn:
                    conn.execute(sa.text("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE"))
                    held = True
                    with self._tally.lock:
                        self._tally.faults["slow-database"] += 1
                    time.sleep(self._rng.uniform(*LOCK_HELD_S))
                    conn.rollback()
            except (sa.exc.SQLAlchemyError, OSError):
                time.sleep(0.5)


def _quiet(engine: Engine, bound_s: float) -> bool:
    """Nothing left to deliver and nothing changing, several polls in a row."""
    from common.emulator_stats import emulator_backlog

    deadline = time.monotonic() + bound_s
    last: tuple[int, ...] | None = None
    calm = 0
    while time.monotonic() < deadline:
        try:
            backlog = emulator_backlog(engine)
            with engine.connect() as conn:
                counts = tuple(
                    conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
                    for table in ("inbox", "dead_letters", "event_log", "ledger_transactions")
                )
        except sa.exc.SQLAlchemyError:
            calm, last = 0, None
            time.sleep(1)
            continue
        pending = sum(f["backlog"] for group in backlog.values() for f in group.values())
        calm = calm + 1 if pending == 0 and counts == last else 0
        last = counts
        if calm >= QUIET_POLLS:
            return True
        time.sleep(1)
    return False


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[Callable[[str], None]]:
    """Everything the stack's processes write goes to one file (they inherit fds 1 and 2);
    what the run itself has to say still reaches the terminal, through the function given."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)

    def say(line: str) -> None:
        os.write(saved[1], f"{line}\n".encode())

    try:
        yield say
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


@dataclass
class Outcome:
    plan: Plan
    tally: Tally
    verdict: Verdict
    quiet: bool
    secret_hits: list[str]
    elapsed_s: float

    @property
    def ok(self) -> bool:
        t = self.tally
        return (
            self.verdict.ok
            and self.quiet
            and not self.secret_hits
            and not t.refused_valid
            and all(t.faults[kind] >= FAULTS_PER_KIND for kind in KINDS)
        )

    def summary(self) -> str:
        v, t = self.verdict, self.tally
        return (
            f"chaos: sent={t.sent} accepted={v.accepted} applied={v.applied + v.ignored} "
            f"duplicates_suppressed={t.accepted_sends - v.accepted} dead_letters={v.dead_letters} "
            f"lost={len(v.lost)} double_applied={len(v.double_applied)} "
            f"invariant_violations={len(v.invariant_violations)}"
        )

    def details(self) -> str:
        v, t = self.verdict, self.tally
        lines = [
            f"chaos: events={len(self.plan.events)} ignored={v.ignored} refused={dict(t.refused)} "
            f"never_answered={len(t.given_up)} faults={dict(t.faults)} quiet={self.quiet} "
            f"secrets_in_logs={len(self.secret_hits)} seconds={self.elapsed_s:.0f}"
        ]
        for name, items in (
            ("lost", v.lost), ("double applied", v.double_applied),
            ("invariant violated", v.invariant_violations), ("wrong outcome", v.wrong_outcome),
            ("wrong balance", v.wrong_balance), ("not in the event log", v.not_logged),
            ("valid event refused", t.refused_valid), ("secret in the logs", self.secret_hits),
        ):  # fmt: skip
            lines += [f"  {name}: {item}" for item in items[:20]]
        return "\n".join(lines)


def _secret_hits(log: Path, values: list[str], signatures: set[str]) -> list[str]:
    """The run's secrets, the stack's own (its generated keys), every signature sent, and any
    bearer token at all: none may appear in what the stack wrote."""
    sent = {signature.encode() for signature in signatures}
    return find_secrets(log.read_bytes(), values, sent)


def run(events: int, seed: int, threads: int = THREADS, quiet_bound_s: float = 900.0) -> Outcome:
    from common.config import Settings
    from common.topology import get_topology
    from hookyard.stack import LocalStack

    started = time.monotonic()
    plan = make_plan(events, seed)
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="hookyard-chaos-"))
    log = work / "stack.log"
    stripe_secret = "whsec_" + secrets.token_urlsafe(24)
    admin_token = secrets.token_urlsafe(24)
    env = {
        "HOOKYARD_SECRET_WEBHOOK_SECRET_STRIPE": stripe_secret,
        "HOOKYARD_SECRET_ADMIN_TOKEN": admin_token,
        "HOOKYARD_CHAOS_FAIL_SHARE": str(FAIL_SHARE),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(INJECT), os.environ.get("PYTHONPATH")])),
    }
    saved_env = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    tally = Tally()
    keep = True
    stack = LocalStack(
        Settings(
            port=0,
            pubsub_port=0,
            data_dir=work / "data",
            dev_processes=True,
            scheduler_enabled=False,
        ),
        topology=get_topology(),
    )
    try:
        with _output_to(log) as say:
            say(f"chaos: the stack's output goes to {log} (kept if the run fails)")
            stack.start()
            try:
                engine = sa.create_engine(stack.postgres.url("hookyard"), pool_pre_ping=True)  # type: ignore[union-attr]
                headers = {"Authorization": f"Bearer {admin_token}"}
                with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as admin:
                    for account in ACCOUNTS:
                        response = admin.put(
                            f"/admin/accounts/{account}", json={"currency": CURRENCY}
                        )
                        response.raise_for_status()
                done = threading.Event()
                faults = Faults(stack, engine, plan, rng, tally, say)
                fault_thread = threading.Thread(
                    target=faults.run, args=(done,), name="chaos-faults"
                )
                fault_thread.start()
                url = f"{stack.url}/webhooks/stripe"
                limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
                with (
                    httpx.Client(timeout=30, limits=limits) as client,
                    ThreadPoolExecutor(threads) as pool,
                ):

                    def send(index: int) -> None:
                        event = plan.events[index]
                        with tally.lock:
                            tally.sent += 1
                        _send(client, url, event, stripe_secret, tally)

                    list(pool.map(send, plan.sends))
                done.set()
                fault_thread.join()
                say(f"chaos: all {len(plan.sends)} sends answered; waiting for quiet")
                quiet = _quiet(engine, quiet_bound_s)
                with engine.connect() as conn:
                    result = verdict(conn, tally.accepted)
                engine.dispose()
            finally:
                stack.stop()
        own = stack_secrets(work / "data")
        hits = _secret_hits(log, [stripe_secret, admin_token, *own], tally.signatures)
        hits += [f"echoed in the response to {echo}" for echo in tally.echoed]
        outcome = Outcome(plan, tally, result, quiet, hits, time.monotonic() - started)
        keep = not outcome.ok
        return outcome
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if keep or os.environ.get("HOOKYARD_CHAOS_KEEP"):
            print(f"chaos: kept {work} (the stack's log and database)", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=int(os.environ.get("EVENTS") or 10_000))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--threads", type=int, default=THREADS)
    args = parser.parse_args(argv)
    if not 1 <= args.events <= 1_000_000:
        parser.error("--events must be 1 to 1,000,000")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"chaos: {args.events} events, seed {seed} (rerun with --seed {seed})", flush=True)
    outcome = run(args.events, seed, args.threads)
    print(outcome.summary())
    print(outcome.details())
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
