"""Secret values behind one interface, cached so the ingest hot path rarely waits on I/O.

Two providers, chosen by `HOOKYARD_SECRETS` (not by `HOOKYARD_ENV`): the environment and
files, and Google Secret Manager. A secret may hold several values, one per line, while it
rotates; callers get every non-empty line and accept whichever verifies.

"Not configured" (empty) and "could not be read" (`SecretUnavailable`) are different
answers: the first rejects, the second is a 503, so an outage of the store is retried by the
caller instead of being mistaken for a decision. Nothing here logs or formats a value.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from common.config import Settings, get_settings
from common.errors import SecretUnavailable, ServiceUnavailable
from common.logging import get_logger

log = get_logger(__name__)

ACCESS_TIMEOUT_S = 10.0
"""How long one Secret Manager read may take, retries included: a webhook waits on it."""


def env_var_for(name: str) -> str:
    """`webhook-secret-stripe` -> `HOOKYARD_SECRET_WEBHOOK_SECRET_STRIPE`."""
    return "HOOKYARD_SECRET_" + name.upper().replace("-", "_")


def split_values(raw: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in raw.splitlines() if line.strip())


class SecretStore(Protocol):
    def values(self, name: str) -> tuple[str, ...]:
        """Every configured value of the secret; empty when it is not configured.
        `SecretUnavailable` when the store cannot tell."""
        ...


def values_or_unavailable(store: SecretStore, name: str) -> tuple[str, ...]:
    """For entry points: a store that cannot answer is a 503 problem the caller retries."""
    try:
        return store.values(name)
    except SecretUnavailable as exc:
        log.error("secret store unavailable", error=str(exc))
        raise ServiceUnavailable("a secret could not be read; retry later") from exc


class EnvSecretStore:
    """`HOOKYARD_SECRET_<NAME>`, else the file `<files_dir>/<name>`.

    The files are what `hookyard dev` generates on first start, so the local stack and the
    CLI (`hookyard send`) share secrets without anyone exporting them by hand; on Cloud Run
    they can be Secret Manager secrets mounted as a volume at `<data_dir>/secrets`.
    """

    def __init__(
        self, environ: Mapping[str, str] | None = None, files_dir: Path | None = None
    ) -> None:
        self._environ = environ if environ is not None else os.environ
        self._files_dir = files_dir

    def values(self, name: str) -> tuple[str, ...]:
        raw = self._environ.get(env_var_for(name))
        if raw is None and self._files_dir is not None:
            path = self._files_dir / name
            try:
                raw = path.read_text(encoding="utf-8") if path.is_file() else None
            except (OSError, UnicodeDecodeError) as exc:
                raise SecretUnavailable(f"secret {name}: file unreadable") from exc
        return split_values(raw or "")


class SecretManagerStore:
    """Google Secret Manager (`versions/latest`) with a TTL cache: access calls are
    quota-limited per project. Failures are not cached, so the next call asks again."""

    def __init__(
        self,
        project: str,
        ttl_s: float,
        client_factory: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = ACCESS_TIMEOUT_S,
    ) -> None:
        self._project = project
        self._ttl = ttl_s
        self._clock = clock
        self._timeout = timeout_s
        self._client_factory = client_factory
        self._client: Any = None
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        if self._client is None:
            if self._client_factory is not None:
                self._client = self._client_factory()
            else:
                from google.cloud import secretmanager

                self._client = secretmanager.SecretManagerServiceClient()
        return self._client

    def values(self, name: str) -> tuple[str, ...]:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(name)
            if hit and now - hit[0] < self._ttl:
                return hit[1]
        vals = self._fetch(name)
        with self._lock:
            self._cache[name] = (now, vals)
        return vals

    def _fetch(self, name: str) -> tuple[str, ...]:
        from google.api_core import exceptions as gexc
        from google.api_core import retry as retries

        path = f"projects/{self._project}/secrets/{name}/versions/latest"
        # Google's own retry policy for this call, bounded by our deadline instead of 60 s.
        retry = retries.Retry(
            initial=0.1,
            maximum=2.0,
            multiplier=2.0,
            predicate=retries.if_exception_type(gexc.ServiceUnavailable, gexc.ResourceExhausted),
            timeout=self._timeout,
        )
        try:
            client = self._get_client()
            response = client.access_secret_version(
                request={"name": path}, retry=retry, timeout=self._timeout
            )
        except gexc.NotFound:
            return ()
        except Exception as exc:  # credentials, transport, deadline, permissions
            raise SecretUnavailable(f"secret {name}: {type(exc).__name__}") from exc
        payload: bytes = response.payload.data
        # proto-plus messages answer `in` for presence of an optional field.
        if "data_crc32c" in response.payload:
            import google_crc32c

            if google_crc32c.value(payload) != response.payload.data_crc32c:
                raise SecretUnavailable(f"secret {name}: payload checksum mismatch")
        try:
            return split_values(payload.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise SecretUnavailable(f"secret {name}: payload is not UTF-8") from exc


def secret_store_for(settings: Settings) -> SecretStore:
    if settings.secrets_provider == "secret-manager":
        return SecretManagerStore(settings.gcp_project, settings.secret_cache_ttl_s)
    return EnvSecretStore(files_dir=settings.data_dir / "secrets")


@lru_cache(maxsize=1)
def get_secret_store() -> SecretStore:
    return secret_store_for(get_settings())
