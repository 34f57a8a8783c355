"""Secret values for the current environment, cached so the ingest hot path never waits on I/O.

A secret may hold several values, one per line, while it rotates; callers get every
non-empty line and accept whichever verifies. Nothing here logs or formats a value.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from common.config import Settings, get_settings
from common.errors import ConfigError


def env_var_for(name: str) -> str:
    """`webhook-secret-stripe` -> `HOOKYARD_SECRET_WEBHOOK_SECRET_STRIPE`."""
    return "HOOKYARD_SECRET_" + name.upper().replace("-", "_")


def split_values(raw: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in raw.splitlines() if line.strip())


class SecretStore(Protocol):
    def values(self, name: str) -> tuple[str, ...]:
        """Every configured value of the secret; empty when it is not configured."""
        ...


class EnvSecretStore:
    """Local development: `HOOKYARD_SECRET_<NAME>`, else the file `<files_dir>/<name>`.

    The files are what `hookyard dev` generates on first start, so the local stack and the
    CLI (`hookyard send`) share secrets without anyone exporting them by hand.
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
            raw = path.read_text(encoding="utf-8") if path.is_file() else None
        return split_values(raw or "")


class SecretManagerStore:
    """Google Secret Manager with a TTL cache (access calls are quota-limited per project)."""

    def __init__(
        self,
        project: str,
        ttl_s: float,
        client_factory: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._project = project
        self._ttl = ttl_s
        self._clock = clock
        self._client_factory = client_factory
        self._client: object | None = None
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def _get_client(self) -> object:
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

        client = self._get_client()
        path = f"projects/{self._project}/secrets/{name}/versions/latest"
        try:
            response = client.access_secret_version(request={"name": path})  # type: ignore[attr-defined]
        except gexc.NotFound:
            return ()
        payload: bytes = response.payload.data
        # proto-plus messages answer `in` for presence of an optional field.
        if "data_crc32c" in response.payload:
            import google_crc32c

            if google_crc32c.value(payload) != response.payload.data_crc32c:
                raise ConfigError(f"secret {name}: payload checksum mismatch")
        return split_values(payload.decode("utf-8"))


@lru_cache(maxsize=1)
def get_secret_store() -> SecretStore:
    settings: Settings = get_settings()
    if settings.env == "gcp":
        return SecretManagerStore(settings.gcp_project, settings.secret_cache_ttl_s)
    return EnvSecretStore(files_dir=settings.data_dir / "secrets")
