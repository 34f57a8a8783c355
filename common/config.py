"""Settings come from the environment only (prefix `HOOKYARD_`), validated once per process."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def request_threads() -> int:
    """The request threads of this process's server as functions-framework sizes gunicorn:
    THREADS if set, else four per core."""
    try:
        return max(int(os.environ.get("THREADS", "")), 1)
    except ValueError:
        return (os.cpu_count() or 1) * 4


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOOKYARD_", extra="ignore", frozen=True)

    env: Literal["local", "gcp"] = "local"
    database_url: str | None = Field(
        default=None,
        description="postgresql+pg8000:// URL; unset locally means embedded PostgreSQL.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free port.")
    data_dir: Path = Path(".hookyard")
    gcp_project: str = "local-project"
    gcp_region: str = "us-central1"
    cloud_sql_instance: str | None = Field(
        default=None, description="PROJECT:REGION:INSTANCE; uses the Cloud SQL Python Connector."
    )
    cloud_sql_ip_type: Literal["public", "private", "psc"] = Field(
        default="public",
        description="which of the instance's addresses the connector uses (infra/ deploys "
        "a private IP only and sets private)",
    )
    db_user: str = "hookyard"
    db_name: str = "hookyard"
    db_pool_size: int = Field(
        default_factory=request_threads,
        ge=1,
        description="Pooled connections: by default one per request thread of the server "
        "(functions-framework's THREADS), so no request waits for or opens a connection.",
    )
    db_max_overflow: int = Field(default=2, ge=0)
    emulator_url: str | None = Field(
        default=None,
        description="Base URL of the local broker; defaults to the local stack's own address.",
    )
    publish_timeout_s: float = Field(default=10.0, gt=0)
    pubsub_port: int = Field(
        default=8085,
        ge=0,
        le=65535,
        description="local stack: Pub/Sub's gRPC API on 127.0.0.1 (as Google's emulator); 0 = free",
    )
    pubsub_emulator_host: str | None = Field(
        default=None,
        validation_alias=AliasChoices("HOOKYARD_PUBSUB_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"),
        description="gcp: HOST:PORT of a Pub/Sub emulator to publish to, as the client library's "
        "PUBSUB_EMULATOR_HOST (insecure, no credentials)",
    )
    worker_url: str | None = Field(
        default=None,
        description="the worker's base URL: Cloud Tasks' target, the service tokens' audience",
    )
    cloud_tasks_endpoint: str | None = Field(
        default=None,
        description="Cloud Tasks API base URL (REST, anonymous): a local emulator; unset: Google",
    )
    tasks_service_account: str | None = Field(
        default=None,
        description="service account whose OIDC token Cloud Tasks attaches; /tasks accepts only it",
    )
    push_service_account: str | None = Field(
        default=None,
        description="gcp: the push subscriptions' OIDC account; /pubsub accepts only it",
    )
    oidc_certs_url: str = Field(
        default="https://www.googleapis.com/oauth2/v1/certs",
        description="where the x509 certificates that sign Google's ID tokens are published (gcp "
        "service tokens; operators' tokens in every mode)",
    )
    admin_operators: list[str] = Field(
        default_factory=list,
        description="emails (JSON list) whose Google ID tokens /admin takes beside the admin token",
    )
    admin_audience: str | None = Field(
        default=None,
        description="what operators' ID tokens must name as audience: admin URL or OAuth client id",
    )
    scheduler_service_account: str | None = Field(
        default=None, description="the only identity /cron accepts in gcp mode (OIDC email)"
    )
    cron_audience: str | None = Field(
        default=None,
        description="the OIDC audience of Cloud Scheduler's tokens; defaults to the worker URL",
    )
    scheduler_enabled: bool = Field(default=True, description="hookyard dev's local scheduler")
    dev_processes: bool = Field(
        default=False,
        description="local stack: run the four targets as separate gunicorn processes behind "
        "the front door, as deployed (hookyard dev does unless --single-process)",
    )
    schedule_overrides: dict[str, str] = Field(
        default_factory=dict,
        description='local only: {"job": "cron"}; a sixth field adds seconds (tests, demos)',
    )
    http_read_timeout_s: float = Field(
        default=10.0, gt=0, le=600, description="local stack: per read/write socket timeout"
    )
    http_max_connections: int = Field(
        default=256, ge=1, le=10_000, description="local stack: open connections served at once"
    )
    notify_timeout_s: float = Field(default=10.0, gt=0, le=60)
    notify_allow_loopback: bool = Field(
        default=False,
        description="local tests only: let notify_url reach 127.0.0.0/8 and ::1; refused in gcp",
    )
    secrets: Literal["env", "secret-manager"] | None = Field(
        default=None,
        description="where secrets come from; unset: secret-manager when env=gcp, else env",
    )
    secret_cache_ttl_s: float = Field(default=300.0, ge=0)
    metrics_exporter: Literal["none", "prometheus", "cloud-monitoring"] | None = Field(
        default=None,
        description="where metrics go: a Prometheus /metrics page, Cloud Monitoring, or nowhere "
        "(the API's no-op); unset: prometheus locally, none in gcp",
    )
    metrics_export_interval_s: float = Field(
        default=60.0, ge=10, description="cloud-monitoring: how often the metrics are written"
    )
    traces_exporter: Literal["none", "console", "cloud-trace"] = Field(
        default="none",
        description="where spans go: nowhere (the API's no-op), stdout, or Cloud Trace",
    )
    traces_sample_ratio: float = Field(
        default=1.0, ge=0, le=1, description="share of traces recorded (decided by trace id)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    @field_validator("pubsub_emulator_host")
    @classmethod
    def _empty_emulator_host_is_unset(cls, value: str | None) -> str | None:
        """The client library ignores an empty PUBSUB_EMULATOR_HOST; so do we."""
        return (value or "").strip() or None

    @model_validator(mode="after")
    def _loopback_notifications_are_local_only(self) -> Settings:
        # In Cloud Run, loopback is the service itself and its sidecars: never a receiver.
        if self.env == "gcp" and self.notify_allow_loopback:
            raise ValueError("HOOKYARD_NOTIFY_ALLOW_LOOPBACK cannot be true when HOOKYARD_ENV=gcp")
        return self

    @property
    def secrets_provider(self) -> Literal["env", "secret-manager"]:
        """A gcp deployment that never set HOOKYARD_SECRETS keeps reading Secret Manager: read
        from an empty environment instead, every webhook would be refused (fail closed)."""
        if self.secrets is not None:
            return self.secrets
        return "secret-manager" if self.env == "gcp" else "env"

    @property
    def metrics_exporter_name(self) -> Literal["none", "prometheus", "cloud-monitoring"]:
        if self.metrics_exporter is not None:
            return self.metrics_exporter
        return "none" if self.env == "gcp" else "prometheus"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def broker_url(self) -> str:
        return (self.emulator_url or self.base_url).rstrip("/")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
