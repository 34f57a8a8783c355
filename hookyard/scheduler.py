"""The local Cloud Scheduler: evaluates each job's cron in its time zone and POSTs
`/cron/{job}` with the headers Scheduler sends, so the cron function cannot tell them apart.

Runs of one job never overlap; a failed tick is retried per the job's retry_config (the
doubling-then-linear curve, until both `retry_count` and `max_retry_duration` are reached),
and the retries stop at the job's next tick, as Scheduler's do.
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
from common.topology import Job, SchedulerRetryConfig, Topology
from hookyard.tasks.backoff import doubling_then_linear

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


def retry_delay_s(
    config: SchedulerRetryConfig, retries: int, since_first_attempt_s: float
) -> float | None:
    """Seconds before the next retry of a run that has just failed after `retries` retries,
    or None when it has had all it gets.

    Scheduler retries "until both limits are reached": `retry_count` retries and, when it is
    set, `max_retry_duration` since the first attempt. With both at 0 a failed run only waits
    for the next tick; with `retry_count` 0 alone, the duration decides.
    """
    duration = config.max_retry_duration_s
    if retries >= config.retry_count and (duration == 0 or since_first_attempt_s >= duration):
        return None
    return doubling_then_linear(
        retries + 1, config.min_backoff_s, config.max_backoff_s, config.max_doublings
    )


class LocalScheduler:
    def __init__(
        self,
        topology: Topology,
        base_url: str,
        *,
        overrides: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        token: TokenProvider | None = None,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        """`token` is the OIDC token every tick carries, as a job's `oidc_token` does.
        `sleep` waits between retries and says whether the scheduler stopped meanwhile; by
        default it is a wait that `stop` cuts short. `clock` tells the time in both."""
        self._token = token
        self._jobs = {job.name: job for job in topology.jobs}
        self._base = base_url.rstrip("/")
        self._overrides = dict(overrides or {})
        self._clock = clock
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
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

    def run(self, job: str, at: datetime, until: datetime) -> bool:
        """The run of `job` for schedule time `at`, with the retries its retry_config grants
        before `until` (its next tick); whether it succeeded."""
        spec = self._jobs[job]
        first_attempt = self._clock()
        retries = 0
        while not self._post(spec, at):
            elapsed = self._clock() - first_attempt
            delay = retry_delay_s(spec.retry_config, retries, elapsed)
            if delay is None or self._stop.is_set():
                return False
            if self._clock() + delay >= until.timestamp():
                return False  # retries stop at the next run
            if self._sleep(delay):
                return False
            retries += 1
        return True

    def _fire(self, job: Job, at: datetime, deadline: datetime) -> None:
        try:
            if not self.run(job.name, at, deadline):
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
