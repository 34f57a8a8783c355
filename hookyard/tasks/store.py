"""Every statement the task emulator runs against its tables in the `emulator` schema.

A task moves pending -> inflight (claimed, leased) -> deleted (a tombstone holding its name),
or back to pending after a failed attempt. Updates that settle an attempt are conditional on
the claim they settle (state inflight, the attempt count seen at claim time and the task's
create time, which tells a name's incarnations apart), so a result that arrives after its
lease ran out, after a purge, or after another claimer took over changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.resources import files
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

# One lock for all emulator DDL: the Pub/Sub emulator creates the same schema.
from hookyard.broker.store import _INSTALL_LOCK_KEY

CHANNEL = "emulator_tasks"

QueueState = Literal["RUNNING", "PAUSED"]
Outcome = Literal["succeeded", "exhausted", "purged"]


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """Where and how a task is sent, as its `http_request` said: no `oidc_email` means no
    Authorization header; no `dispatch_deadline_s` means the queue's."""

    url: str
    http_method: str = "POST"
    oidc_email: str | None = None
    oidc_audience: str | None = None
    dispatch_deadline_s: int | None = None


@dataclass(frozen=True, slots=True)
class NewTask:
    """`target` None: the queue's worker path, with the emulator's own token."""

    queue: str
    name: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    schedule_time: datetime | None = None
    target: HttpTarget | None = None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A live task as `CreateTask`, `GetTask` and `ListTasks` answer it."""

    queue: str
    name: str
    schedule_time: datetime
    create_time: datetime
    dispatch_count: int
    response_count: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    target: HttpTarget | None = None
    first_attempt_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_status: int | None = None


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    """A task as claimed for one attempt; `attempts` counts the attempts before this one,
    `executions` the responses among them that were not 5xx."""

    queue: str
    name: str
    create_time: datetime
    attempts: int
    executions: int
    body: bytes
    headers: dict[str, str]
    schedule_time: datetime
    last_status: int | None
    last_error: str | None
    target: HttpTarget | None = None


@dataclass(frozen=True, slots=True)
class DueIn:
    """Seconds until a queue's next pending task and next lease expiry; None when none."""

    pending_s: float | None
    lease_s: float | None


def install(conn: Connection) -> None:
    """Idempotent, and serialized so emulators starting together do not race on DDL."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _INSTALL_LOCK_KEY})
    conn.exec_driver_sql(files(__package__).joinpath("schema.sql").read_text(encoding="utf-8"))


# Constant fragments only, interpolated into statements; every value is a bound parameter.
_TARGET_COLUMNS = "t.url, t.http_method, t.oidc_email, t.oidc_audience, t.dispatch_deadline_s"
_TASK_COLUMNS = (
    "t.queue, t.name, t.create_time, t.attempts, t.executions, t.body, t.headers, "
    f"t.schedule_time, t.last_status, t.last_error, {_TARGET_COLUMNS}"
)
_RECORD_COLUMNS = (
    "t.queue, t.name, t.schedule_time, t.create_time, t.attempts, t.responses, t.body, "
    f"t.headers, t.first_attempt_at, t.last_attempt_at, t.last_status, {_TARGET_COLUMNS}"
)
# The claim an update settles: a late result, or one for an earlier incarnation of the
# name, matches nothing.
_OF_CLAIM = (
    "WHERE queue = :queue AND name = :name AND create_time = :create_time "
    "AND state = 'inflight' AND attempts = :attempts"
)

# A past or missing schedule time means now, as Cloud Tasks stores it. A tombstone older
# than the window is the only conflict that is overwritten: the name is free again.
_CREATE = sa.text(f"""
    INSERT INTO emulator.tasks AS t (
        queue, name, body, headers, schedule_time, due_at,
        url, http_method, oidc_email, oidc_audience, dispatch_deadline_s
    )
    SELECT :queue, :name, :body, CAST(:headers AS jsonb), eta, eta,
           :url, :http_method, :oidc_email, :oidc_audience, :dispatch_deadline_s
    FROM (SELECT greatest(coalesce(CAST(:schedule_time AS timestamptz), now()), now()) AS eta) s
    ON CONFLICT (queue, name) DO UPDATE
    SET state = 'pending', body = EXCLUDED.body, headers = EXCLUDED.headers,
        schedule_time = EXCLUDED.schedule_time, create_time = now(), due_at = EXCLUDED.due_at,
        attempts = 0, responses = 0, executions = 0,
        first_attempt_at = NULL, last_attempt_at = NULL, last_status = NULL,
        last_error = NULL, deleted_at = NULL, outcome = NULL,
        url = EXCLUDED.url, http_method = EXCLUDED.http_method,
        oidc_email = EXCLUDED.oidc_email, oidc_audience = EXCLUDED.oidc_audience,
        dispatch_deadline_s = EXCLUDED.dispatch_deadline_s
    WHERE t.state = 'deleted' AND t.deleted_at <= now() - make_interval(secs => :tombstone_s)
    RETURNING {_RECORD_COLUMNS}
""")

_NOTIFY = sa.text("SELECT pg_notify(:channel, :queue)")


def create(conn: Connection, task: NewTask, tombstone_s: float) -> TaskRecord | None:
    """Stores the task unless its name is taken (None: ALREADY_EXISTS), then notifies.

    PostgreSQL sends the notification only when the caller's transaction commits, so a
    woken dispatcher always finds the row.
    """
    target = task.target
    row = conn.execute(
        _CREATE,
        {
            "queue": task.queue,
            "name": task.name,
            "body": task.body,
            "headers": json.dumps(dict(task.headers)),
            "schedule_time": task.schedule_time,
            "tombstone_s": float(tombstone_s),
            "url": None if target is None else target.url,
            "http_method": "POST" if target is None else target.http_method,
            "oidc_email": None if target is None else target.oidc_email,
            "oidc_audience": None if target is None else target.oidc_audience,
            "dispatch_deadline_s": None if target is None else target.dispatch_deadline_s,
        },
    ).one_or_none()
    if row is None:
        return None
    _notify(conn, task.queue)
    return _record(row)


_GET = sa.text(f"""
    SELECT {_RECORD_COLUMNS} FROM emulator.tasks AS t
    WHERE t.queue = :queue AND t.name = :name AND t.state IN ('pending', 'inflight')
""")


def get(conn: Connection, queue: str, name: str) -> TaskRecord | None:
    """A task that has neither run to its end nor been deleted; a tombstone is no task."""
    row = conn.execute(_GET, {"queue": queue, "name": name}).one_or_none()
    return None if row is None else _record(row)


_LIST = sa.text(f"""
    SELECT {_RECORD_COLUMNS} FROM emulator.tasks AS t
    WHERE t.queue = :queue AND t.state IN ('pending', 'inflight') AND t.name > :after
    ORDER BY t.name
    LIMIT :limit
""")


def list_live(conn: Connection, queue: str, after: str, limit: int) -> list[TaskRecord]:
    """Live tasks by name, from the first one after `after` ("" for the start)."""
    rows = conn.execute(_LIST, {"queue": queue, "after": after, "limit": limit})
    return [_record(row) for row in rows]


# As a purge does for one task: an attempt on the wire runs on, its outcome is discarded.
_DELETE = sa.text("""
    UPDATE emulator.tasks
    SET state = 'deleted', deleted_at = now(), outcome = 'deleted',
        body = ''::bytea, headers = '{}'::jsonb
    WHERE queue = :queue AND name = :name AND state IN ('pending', 'inflight')
""")


def delete(conn: Connection, queue: str, name: str) -> bool:
    """Tombstones a live task, so its name stays taken for the window; False when none."""
    return _updated(conn.execute(_DELETE, {"queue": queue, "name": name}))


# Paused queues are skipped here, not in Python, so a pause from another process counts.
_CLAIM = sa.text(f"""
    WITH due AS (
        SELECT t.queue, t.name
        FROM emulator.tasks AS t
        WHERE t.queue = :queue
          AND t.state = 'pending'
          AND t.due_at <= now()
          AND NOT EXISTS (
              SELECT 1 FROM emulator.task_queues AS q
              WHERE q.name = t.queue AND q.state = 'PAUSED'
          )
        ORDER BY t.due_at, t.create_time, t.name
        LIMIT :limit
        FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE emulator.tasks AS t
    SET state = 'inflight',
        due_at = now() + make_interval(
            secs => coalesce(
                t.dispatch_deadline_s + CAST(:lease_margin_s AS float8), CAST(:lease_s AS float8)
            )
        ),
        first_attempt_at = coalesce(t.first_attempt_at, now()),
        last_attempt_at = now()
    FROM due
    WHERE t.queue = due.queue AND t.name = due.name
    RETURNING {_TASK_COLUMNS}
""")


def claim(
    conn: Connection, queue: str, lease_s: float, limit: int, lease_margin_s: float = 0.0
) -> list[ClaimedTask]:
    """Leases up to `limit` due tasks of one queue to the caller, oldest due first: for
    `lease_s`, or a task's own dispatch deadline plus `lease_margin_s`.

    SKIP LOCKED lets several emulators claim from one database without ever taking the
    same row.
    """
    if limit <= 0:
        return []
    params = {
        "queue": queue,
        "lease_s": float(lease_s),
        "lease_margin_s": float(lease_margin_s),
        "limit": limit,
    }
    rows = conn.execute(_CLAIM, params)
    return sorted((_claimed(row) for row in rows), key=lambda t: (t.create_time, t.name))


_EXPIRED = sa.text(f"""
    SELECT {_TASK_COLUMNS}
    FROM emulator.tasks AS t
    WHERE t.queue IN :queues AND t.state = 'inflight' AND t.due_at <= now()
    ORDER BY t.due_at
    LIMIT :limit
    FOR UPDATE OF t SKIP LOCKED
""").bindparams(sa.bindparam("queues", expanding=True))


def expired_leases(conn: Connection, queues: Sequence[str], limit: int) -> list[ClaimedTask]:
    """Inflight tasks whose holder never reported back; locked for the caller to settle."""
    rows = conn.execute(_EXPIRED, {"queues": list(queues), "limit": limit})
    return [_claimed(row) for row in rows]


_LOCK_CLAIM = sa.text(f"""
    SELECT EXTRACT(EPOCH FROM now() - first_attempt_at)
    FROM emulator.tasks
    {_OF_CLAIM}
    FOR UPDATE
""")


def lock_claim(conn: Connection, task: ClaimedTask) -> float | None:
    """Seconds since the task's first attempt, by the database clock, with the row locked;
    None when the claim is no longer the caller's to settle."""
    value = conn.execute(_LOCK_CLAIM, _claim_key(task)).scalar_one_or_none()
    return None if value is None else float(value)


_MARK_DELETED = sa.text(f"""
    UPDATE emulator.tasks
    SET state = 'deleted', deleted_at = now(), outcome = :outcome,
        body = ''::bytea, headers = '{{}}'::jsonb,
        attempts = attempts + 1, responses = responses + :responded,
        executions = executions + :executed, last_status = :status, last_error = :error
    {_OF_CLAIM}
""")
_MARK_RETRY = sa.text(f"""
    UPDATE emulator.tasks
    SET state = 'pending', due_at = now() + make_interval(secs => :delay_s),
        attempts = attempts + 1, responses = responses + :responded,
        executions = executions + :executed, last_status = :status, last_error = :error
    {_OF_CLAIM}
""")
# A claim given back before its attempt started leaves no trace, not even a first attempt.
_RELEASE = sa.text(f"""
    UPDATE emulator.tasks
    SET state = 'pending', due_at = now(),
        first_attempt_at = CASE WHEN attempts = 0 THEN NULL ELSE first_attempt_at END
    {_OF_CLAIM}
""")


def mark_deleted(
    conn: Connection, task: ClaimedTask, outcome: Outcome, status: int | None, error: str | None
) -> bool:
    """Ends the task after this attempt; the row stays behind as the name's tombstone."""
    params = {**_attempt_params(task, status, error), "outcome": outcome}
    return _updated(conn.execute(_MARK_DELETED, params))


def mark_retry(
    conn: Connection, task: ClaimedTask, delay_s: float, status: int | None, error: str | None
) -> bool:
    params = {**_attempt_params(task, status, error), "delay_s": float(delay_s)}
    return _updated(conn.execute(_MARK_RETRY, params))


def release(conn: Connection, task: ClaimedTask) -> bool:
    """Gives back a claim that was never attempted, without counting an attempt."""
    return _updated(conn.execute(_RELEASE, _claim_key(task)))


# Leases run out whether or not the queue is paused: settling is not dispatching.
_DUE_IN = sa.text("""
    SELECT t.queue,
           EXTRACT(EPOCH FROM min(t.due_at) FILTER (
               WHERE t.state = 'pending' AND q.state IS DISTINCT FROM 'PAUSED'
           ) - clock_timestamp()) AS pending_s,
           EXTRACT(EPOCH FROM min(t.due_at) FILTER (WHERE t.state = 'inflight')
                   - clock_timestamp()) AS lease_s
    FROM emulator.tasks AS t
    LEFT JOIN emulator.task_queues AS q ON q.name = t.queue
    WHERE t.queue IN :queues AND t.state IN ('pending', 'inflight')
    GROUP BY t.queue
""").bindparams(sa.bindparam("queues", expanding=True))


def due_in(conn: Connection, queues: Sequence[str]) -> dict[str, DueIn]:
    """Per queue with open tasks, by the database clock: when there is work next."""
    rows = conn.execute(_DUE_IN, {"queues": list(queues)})
    return {row.queue: DueIn(_seconds(row.pending_s), _seconds(row.lease_s)) for row in rows}


_PURGE = sa.text("""
    WITH purged AS (
        UPDATE emulator.tasks
        SET state = 'deleted', deleted_at = now(), outcome = 'purged',
            body = ''::bytea, headers = '{}'::jsonb
        WHERE queue = :queue AND state IN ('pending', 'inflight')
        RETURNING 1
    ), marked AS (
        INSERT INTO emulator.task_queues AS q (name, purge_time) VALUES (:queue, now())
        ON CONFLICT (name) DO UPDATE SET purge_time = EXCLUDED.purge_time
    )
    SELECT count(*) FROM purged
""")


def purge(conn: Connection, queue: str) -> int:
    """Tombstones every open task the statement can see: those created before the purge.

    An attempt already on the wire runs to its end, but its outcome is discarded.
    """
    return int(conn.execute(_PURGE, {"queue": queue}).scalar_one())


_SET_STATE = sa.text("""
    INSERT INTO emulator.task_queues AS q (name, state) VALUES (:queue, :state)
    ON CONFLICT (name) DO UPDATE SET state = EXCLUDED.state
""")
_QUEUE_STATE = sa.text("SELECT state FROM emulator.task_queues WHERE name = :queue")
_QUEUE_ROW = sa.text("SELECT state, purge_time FROM emulator.task_queues WHERE name = :queue")


def set_queue_state(conn: Connection, queue: str, state: QueueState) -> None:
    """Persists the state and, for a resume, wakes dispatchers in every process."""
    conn.execute(_SET_STATE, {"queue": queue, "state": state})
    _notify(conn, queue)


def queue_state(conn: Connection, queue: str) -> QueueState:
    state = conn.execute(_QUEUE_STATE, {"queue": queue}).scalar_one_or_none()
    return "PAUSED" if state == "PAUSED" else "RUNNING"


def queue_status(conn: Connection, queue: str) -> tuple[QueueState, datetime | None]:
    """The queue's state and its last purge time, as `GetQueue` answers them."""
    row = conn.execute(_QUEUE_ROW, {"queue": queue}).one_or_none()
    if row is None:
        return "RUNNING", None
    return ("PAUSED" if row.state == "PAUSED" else "RUNNING"), row.purge_time


_COLLECT_TOMBSTONES = sa.text("""
    DELETE FROM emulator.tasks
    WHERE state = 'deleted' AND deleted_at <= now() - make_interval(secs => :tombstone_s)
""")


def collect_tombstones(conn: Connection, tombstone_s: float) -> int:
    """Frees the rows of names whose window has passed; creates would reuse them anyway."""
    result = conn.execute(_COLLECT_TOMBSTONES, {"tombstone_s": float(tombstone_s)})
    return int(result.rowcount)


_PENDING_ALL = sa.text("SELECT count(*) FROM emulator.tasks WHERE state IN ('pending', 'inflight')")
_PENDING_QUEUE = sa.text(
    "SELECT count(*) FROM emulator.tasks WHERE state IN ('pending', 'inflight') AND queue = :queue"
)


def pending_count(conn: Connection, queue: str | None = None) -> int:
    if queue is None:
        return int(conn.execute(_PENDING_ALL).scalar_one())
    return int(conn.execute(_PENDING_QUEUE, {"queue": queue}).scalar_one())


def _notify(conn: Connection, queue: str) -> None:
    conn.execute(_NOTIFY, {"channel": CHANNEL, "queue": queue})


def _claim_key(task: ClaimedTask) -> dict[str, Any]:
    return {
        "queue": task.queue,
        "name": task.name,
        "create_time": task.create_time,
        "attempts": task.attempts,
    }


def _attempt_params(task: ClaimedTask, status: int | None, error: str | None) -> dict[str, Any]:
    """What settling records of an attempt: a status means the handler responded, and a
    response other than 5xx counts as an execution, as Cloud Tasks counts them."""
    return {
        **_claim_key(task),
        "responded": int(status is not None),
        "executed": int(status is not None and status < 500),
        "status": status,
        "error": error,
    }


def _claimed(row: sa.Row[Any]) -> ClaimedTask:
    return ClaimedTask(
        queue=row.queue,
        name=row.name,
        create_time=row.create_time,
        attempts=int(row.attempts),
        executions=int(row.executions),
        body=bytes(row.body),
        headers=dict(row.headers or {}),
        schedule_time=row.schedule_time,
        last_status=row.last_status,
        last_error=row.last_error,
        target=_target(row),
    )


def _record(row: sa.Row[Any]) -> TaskRecord:
    return TaskRecord(
        queue=row.queue,
        name=row.name,
        schedule_time=row.schedule_time,
        create_time=row.create_time,
        dispatch_count=int(row.attempts),
        response_count=int(row.responses),
        body=bytes(row.body),
        headers=dict(row.headers or {}),
        target=_target(row),
        first_attempt_at=row.first_attempt_at,
        last_attempt_at=row.last_attempt_at,
        last_status=row.last_status,
    )


def _target(row: sa.Row[Any]) -> HttpTarget | None:
    if row.url is None:
        return None
    return HttpTarget(
        url=row.url,
        http_method=row.http_method,
        oidc_email=row.oidc_email,
        oidc_audience=row.oidc_audience,
        dispatch_deadline_s=row.dispatch_deadline_s,
    )


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


def _updated(result: sa.CursorResult[Any]) -> bool:
    return result.rowcount == 1
