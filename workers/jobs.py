"""The worker side of Hookyard's scheduled jobs: queue `jobs` (one task per Scheduler tick,
see common.job_tasks) and queue `statements` (daily-balances' per-account fan-out).

Every job is safe to run twice for the same tick, because Cloud Tasks may deliver a task
more than once and the jobs queue retries failures: fan-out task names are deterministic
(ALREADY_EXISTS counts as done), statements are upserts, retention deletes only what is
still old, and reconcile only adds a finding row.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Engine

from common import bounded_json
from common.db import reconciliations, retention, statements
from common.errors import PermanentError
from common.job_tasks import parse_job_task
from common.logging import get_logger
from common.message_relay import MessageRelay
from common.messaging.tasks import TaskQueue, TaskRequest
from common.outbox_relay import OutboxRelay
from common.topology import Topology

log = get_logger(__name__)

STATEMENTS_QUEUE = "statements"
RELAY_OLDER_THAN_S = 60.0
_INVALID_TASK_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def statement_task_name(day: date, account_id: str) -> str:
    """`daily-balances-{YYYYMMDD}-{account}`, a valid task id for any account id.

    Account ids may hold `.`, which task ids forbid. Replacing it alone would make `a.b` and
    `a_b` share a name (one statement silently skipped as ALREADY_EXISTS), so whenever a
    character is replaced a short hash of the real id is appended; ids that need no
    replacement keep their readable name unchanged.
    """
    safe = _INVALID_TASK_CHARS.sub("_", account_id)
    if safe != account_id:
        safe += "-" + hashlib.sha256(account_id.encode()).hexdigest()[:12]
    return f"daily-balances-{day:%Y%m%d}-{safe}"


def statement_date(schedule_time: datetime) -> date:
    """The UTC day that closed before the tick: a 00:05 tick on D writes D-1."""
    return schedule_time.astimezone(UTC).date() - timedelta(days=1)


@dataclass(frozen=True, slots=True)
class FanOut:
    day: date
    accounts: int
    created: int
    pages: int


@dataclass(frozen=True, slots=True)
class Reconciliation:
    id: int
    ok: bool
    problems: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """Rows deleted and batches (statements) run per table."""

    deleted: dict[str, int] = field(default_factory=dict)
    batches: dict[str, int] = field(default_factory=dict)


class JobRunner:
    """Handler for queue `jobs`: parses the task and runs the named job for its tick."""

    def __init__(  # noqa: PLR0917 - the documented positional signature
        self,
        engine: Engine,
        topology: Topology,
        tasks: TaskQueue,
        relay: OutboxRelay,
        retention_days: int = 30,
        batch: int = 1000,
        *,
        messages: MessageRelay | None = None,
    ) -> None:
        if retention_days < 1 or batch < 1:
            raise ValueError("retention_days and batch must be positive")
        self._engine = engine
        self._topology = topology
        self._tasks = tasks
        self._relay = relay
        self._messages = messages
        self._retention_days = retention_days
        self._batch = batch
        self._jobs: dict[str, Callable[[datetime], object]] = {
            "daily-balances": self.daily_balances,
            "reconcile": self.reconcile,
            "retention": self.retention,
            "outbox-relay": self.outbox_relay,
        }

    @property
    def job_names(self) -> tuple[str, ...]:
        """The jobs this worker can run: each must be a Scheduler job in the topology."""
        return tuple(self._jobs)

    def __call__(self, body: bytes) -> None:
        job, schedule_time = parse_job_task(body)
        run = self._jobs.get(job)
        # A job we do not know, or one the topology no longer schedules, will never succeed
        # by retrying: dead-letter it at once.
        if run is None or self._topology.job(job) is None:
            raise PermanentError(f"unknown job {job!r}")
        result = run(schedule_time)
        log.info("job done", job=job, schedule_time=schedule_time.isoformat(), result=repr(result))

    # -- daily-balances ----------------------------------------------------------------
    def daily_balances(self, schedule_time: datetime) -> FanOut:
        """One named `statements` task per account that existed by the end of the day.

        Pages by account id (keyset) so memory stays at one page however many accounts
        there are. A PublishError propagates: the jobs queue retries the whole fan-out, and
        the tasks already created answer ALREADY_EXISTS.
        """
        day = statement_date(schedule_time)
        after, accounts, created, pages = "", 0, 0, 0
        while True:
            with self._engine.connect() as conn:
                page = statements.account_page(conn, day, after=after, limit=self._batch)
            pages += 1
            for account_id in page:
                body = {"date": day.isoformat(), "account_id": account_id}
                request = TaskRequest(
                    queue=STATEMENTS_QUEUE,
                    name=statement_task_name(day, account_id),
                    body=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"},
                )
                created += int(self._tasks.enqueue(request))
            accounts += len(page)
            if len(page) < self._batch:
                return FanOut(day=day, accounts=accounts, created=created, pages=pages)
            after = page[-1]

    # -- reconcile ---------------------------------------------------------------------
    def reconcile(self, schedule_time: datetime) -> Reconciliation:
        """Records the invariants' findings; a mismatch is logged as ERROR (for alerting)
        and never raised, since a retry would find the same thing and then dead-letter it."""
        with self._engine.begin() as conn:
            problems = reconciliations.check(conn)
            row_id = reconciliations.record(conn, schedule_time, problems)
        if problems:
            log.error(
                "ledger does not reconcile", reconciliation_id=row_id,
                problem_count=len(problems), problems=problems,
            )  # fmt: skip
        return Reconciliation(id=row_id, ok=not problems, problems=problems)

    # -- retention ---------------------------------------------------------------------
    def retention(self, schedule_time: datetime) -> RetentionReport:
        """Deletes rows older than `retention_days` before the tick, one short transaction
        per batch, until a batch comes back short."""
        cutoff = schedule_time - timedelta(days=self._retention_days)
        payload_cutoffs = {
            source.name: schedule_time - timedelta(days=source.retention_days)
            for source in self._topology.sources
        }

        def erase_payloads(conn: Connection, cutoff: datetime, limit: int) -> int:
            return retention.erase_payloads(conn, payload_cutoffs, cutoff, limit)

        steps: dict[str, Callable[[Connection, datetime, int], int]] = {
            "payloads": erase_payloads,
            "inbox": retention.delete_inbox,
            "event_log": retention.delete_event_log,
            "outbox": retention.delete_settled_outbox,
            "outbound_messages": retention.delete_published_messages,
            "delivery_failures": retention.delete_delivery_failures,
        }
        report = RetentionReport()
        for table, delete in steps.items():
            deleted = batches = 0
            while True:
                with self._engine.begin() as conn:
                    n = delete(conn, cutoff, self._batch)
                deleted += n
                batches += 1
                if n < self._batch:
                    break
            report.deleted[table] = deleted
            report.batches[table] = batches
        return report

    # -- outbox-relay ------------------------------------------------------------------
    def outbox_relay(self, schedule_time: datetime) -> int:
        del schedule_time  # the sweep is relative to now, not to the tick
        relayed = self._relay.sweep(older_than_s=RELAY_OLDER_THAN_S)
        if self._messages is not None:
            relayed += self._messages.sweep(older_than_s=RELAY_OLDER_THAN_S)
        return relayed


class StatementWriter:
    """Handler for queue `statements`: one account's closing balances for one day."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __call__(self, body: bytes) -> None:
        account_id, day = parse_statement_task(body)
        with self._engine.begin() as conn:
            written = statements.write_closing(conn, account_id, day)
        if written is None:
            raise PermanentError(f"no account {account_id!r}")


def parse_statement_task(body: bytes) -> tuple[str, date]:
    try:
        doc = bounded_json.loads(body)
        account_id, day = doc["account_id"], date.fromisoformat(doc["date"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentError("statement task body needs account_id and date") from exc
    if not isinstance(account_id, str) or not account_id:
        raise PermanentError("statement task account_id must be a non-empty string")
    return account_id, day
