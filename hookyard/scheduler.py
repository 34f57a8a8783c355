"""The local Cloud Scheduler: evaluates each job's cron in its time zone and POSTs
`/cron/{job}` with the headers Scheduler sends, so the cron function cannot tell them apart.

Runs of one job never overlap; a failed tick is retried per the job's retry_config, and the
retries stop at the job's next tick, as Scheduler's do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
from croniter import croniter

from common.logging import get_logger
from common.oidc import TokenProvider
from common.topology import Job, Topology

log = get_logger(__name__)

MAX_SLEEP_S = 5.0


@dataclass(frozen=True)
class Tick:
    job: str
    at: datetime


def next_tick(job: Job, after: datetime, override: str | None = None) -> datetime:
    """The first schedule time strictly after `after`, evaluated in the job's zone (so DST
    moves the UTC time as Scheduler does), returned in UTC."""
    zone = ZoneInfo(job.time_zone)
    nxt: datetime = croniter(override or job.schedule, after.astimezone(zone)).get_next(datetime)
    return nxt.astimezone(UTC)


def scheduler_headers(job: str, at: datetime) -> dict[str, str]:
    """No Content-Type: Scheduler sets one (octet-stream) only for a job with a body, and
    Hookyard's jobs have none."""
    return {
        "X-CloudScheduler": "true",
        "X-CloudScheduler-JobName": job,
        "X-CloudScheduler-ScheduleTime": at.isoformat().replace("+00:00", "Z"),
        "User-Agent": "Google-Cloud-Scheduler",
    }


class LocalScheduler:
    def __init__(
        self,
        topology: Topology,
        base_url: str,
        *,
        overrides: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        token: TokenProvider | None = None,
    ) -> None:
        """`token` is the OIDC token every tick carries, as a job's `oidc_token` does."""
        self._token = token
        self._jobs = {job.name: job for job in topology.jobs}
        self._base = base_url.rstrip("/")
        self._overrides = dict(overrides or {})
        self._clock = clock
        self._stop = threading.Event()
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="scheduler-fire")
        self._http = httpx.Client(timeout=30)
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("local scheduler started", jobs=sorted(self._jobs))

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _run(self) -> None:
        upcoming = {name: next_tick(job, self._now(), self._overrides.get(name))
                    for name, job in self._jobs.items()}  # fmt: skip
        while not self._stop.is_set() and upcoming:
            name, at = min(upcoming.items(), key=lambda item: item[1])
            wait = (at - self._now()).total_seconds()
            if wait > 0:
                self._stop.wait(min(wait, MAX_SLEEP_S))
                continue
            job = self._jobs[name]
            following = next_tick(job, at, self._overrides.get(name))
            upcoming[name] = following
            with self._lock:
                if name in self._running:
                    log.warning("previous run still going; tick skipped", job=name)
                    continue
                self._running.add(name)
            self._pool.submit(self._fire, job, at, following)

    def _fire(self, job: Job, at: datetime, deadline: datetime) -> None:
        try:
            delay = job.retry_config.min_backoff_s
            for attempt in range(job.retry_config.retry_count + 1):
                if self._post(job, at):
                    return
                if attempt == job.retry_config.retry_count or self._stop.is_set():
                    break
                if self._now().timestamp() + delay >= deadline.timestamp():
                    break  # retries stop at the next run
                self._stop.wait(delay)
                delay = min(delay * 2, job.retry_config.max_backoff_s)
            log.warning("cron tick failed", job=job.name, schedule_time=at.isoformat())
        finally:
            with self._lock:
                self._running.discard(job.name)

    def _post(self, job: Job, at: datetime) -> bool:
        headers = scheduler_headers(job.name, at)
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token()}"
        try:
            response = self._http.post(
                f"{self._base}/cron/{job.name}",
                headers=headers,
                timeout=job.attempt_deadline_s,
            )
        except httpx.HTTPError as exc:
            log.warning("cron tick unreachable", job=job.name, error=type(exc).__name__)
            return False
        return response.is_success


def upcoming(topology: Topology, now: datetime, count: int = 3) -> list[Tick]:
    """The next `count` ticks of every job, for `hookyard cron list`."""
    ticks = []
    for job in topology.jobs:
        at = now
        for _ in range(count):
            at = next_tick(job, at)
            ticks.append(Tick(job.name, at))
    return ticks
