from __future__ import annotations

from pathlib import Path

import pytest

from common.config import Settings
from common.errors import SecretUnavailable
from common.secrets import (
    EnvSecretStore,
    SecretManagerStore,
    env_var_for,
    secret_store_for,
    split_values,
)


def test_env_var_names() -> None:
    assert env_var_for("webhook-secret-stripe") == "HOOKYARD_SECRET_WEBHOOK_SECRET_STRIPE"
    assert env_var_for("admin-token") == "HOOKYARD_SECRET_ADMIN_TOKEN"


def test_rotation_lines_keep_inner_spaces() -> None:
    assert split_values("  It's a Secret to Everybody \n\nwhsec_new\n") == (
        "It's a Secret to Everybody",
        "whsec_new",
    )
    assert split_values("   \n") == ()


def test_env_wins_over_files(tmp_path: Path) -> None:
    (tmp_path / "admin-token").write_text("from-file\n")
    (tmp_path / "other").write_text("file-only\n")
    store = EnvSecretStore({"HOOKYARD_SECRET_ADMIN_TOKEN": "from-env"}, files_dir=tmp_path)
    assert store.values("admin-token") == ("from-env",)
    assert store.values("other") == ("file-only",)
    assert store.values("missing") == ()


def test_unreadable_file_is_unavailable_not_empty(tmp_path: Path) -> None:
    (tmp_path / "admin-token").write_bytes(b"\xff\xfe not utf-8")
    store = EnvSecretStore({}, files_dir=tmp_path)
    with pytest.raises(SecretUnavailable, match="admin-token") as info:
        store.values("admin-token")
    assert "not utf-8" not in str(info.value)


@pytest.mark.parametrize(
    ("env", "chosen", "provider", "store"),
    [
        ("local", None, "env", EnvSecretStore),
        ("gcp", None, "secret-manager", SecretManagerStore),
        ("gcp", "env", "env", EnvSecretStore),
        ("local", "secret-manager", "secret-manager", SecretManagerStore),
    ],
)
def test_the_provider_is_a_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, chosen: str | None, provider: str, store: type
) -> None:
    monkeypatch.delenv("HOOKYARD_SECRETS", raising=False)
    settings = Settings(env=env, secrets=chosen)  # type: ignore[arg-type]
    assert settings.secrets_provider == provider
    assert isinstance(secret_store_for(settings), store)  # built lazily: no client, no I/O
