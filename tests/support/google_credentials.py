"""An environment in which google-auth finds no credentials, as on a machine nobody logged in
to: no `GOOGLE_APPLICATION_CREDENTIALS`, an empty gcloud configuration and home, and a
metadata server address where nothing listens (refused at once, never a 3 s timeout to
169.254.169.254). Building a real Google client there raises `DefaultCredentialsError`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.stack import free_port


def without_google_credentials(monkeypatch: pytest.MonkeyPatch, empty_dir: Path) -> None:
    empty_dir.mkdir(parents=True, exist_ok=True)
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "PUBSUB_EMULATOR_HOST", "GCE_METADATA_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(empty_dir))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(empty_dir))
    nobody = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("GCE_METADATA_HOST", nobody)
    monkeypatch.setenv("GCE_METADATA_IP", nobody)
