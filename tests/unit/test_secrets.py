from __future__ import annotations

from pathlib import Path

from common.secrets import EnvSecretStore, SecretManagerStore, env_var_for, split_values


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


class _Payload:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.data_crc32c = 0

    def HasField(self, name: str) -> bool:
        return False


class _Response:
    def __init__(self, data: bytes) -> None:
        self.payload = _Payload(data)


class _Client:
    def __init__(self) -> None:
        self.calls = 0

    def access_secret_version(self, request: dict[str, str]) -> _Response:
        self.calls += 1
        assert request["name"] == "projects/p/secrets/s/versions/latest"
        return _Response(b"one\ntwo\n")


def test_secret_manager_store_caches_for_ttl() -> None:
    now = [0.0]
    client = _Client()
    store = SecretManagerStore("p", ttl_s=60, client_factory=lambda: client, clock=lambda: now[0])
    assert store.values("s") == ("one", "two")
    assert store.values("s") == ("one", "two")
    assert client.calls == 1
    now[0] = 61
    store.values("s")
    assert client.calls == 2
