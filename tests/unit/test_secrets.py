from __future__ import annotations

from pathlib import Path

from common.secrets import EnvSecretStore, env_var_for, split_values


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
