"""Secrets for the local stack, generated once under `.hookyard/secrets/` (mode 0600).

An environment variable `HOOKYARD_SECRET_<NAME>` always wins; files only fill the gaps, so
`make run` works with no setup and every source is still verified (never "accept all").
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from common.secrets import env_var_for
from common.topology import Topology


def _generate(name: str, scheme: str | None) -> str:
    if name == "admin-token":
        return secrets.token_urlsafe(32)
    if name == "notify-signing-key" or scheme in {"standard-webhooks", "svix"}:
        return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    if scheme == "stripe":
        return "whsec_" + secrets.token_hex(24)
    return secrets.token_urlsafe(32)


def ensure_dev_secrets(directory: Path, topology: Topology) -> list[str]:
    """Creates missing secrets; returns the names it created."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    schemes = {s.secret: s.scheme for s in topology.sources}
    created = []
    for name in topology.all_secret_names():
        if name == "db-password" or env_var_for(name) in os.environ:
            continue
        path = directory / name
        if path.exists():
            continue
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(_generate(name, schemes.get(name)) + "\n")
        created.append(name)
    return created
