"""The bench-only environment `.bench/venv`: the reference peer (hookrelay with FastAPI,
uvicorn, asyncpg) and matplotlib, kept out of the project's `.venv` so that nothing the
product or its tests import can come from the peer's dependency set.

Built with the project's pinned uv from the fully pinned (hashed) `bench-requirements.txt`;
a stamp holding that file's hash makes a second call return at once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).with_name("bench-requirements.txt")
VENV = ROOT / ".bench" / "venv"
STAMP = VENV / ".requirements-sha256"
UV = ROOT / ".tools" / "bin" / "uv"


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _fingerprint() -> str:
    """The requirements and the interpreter they were installed for: either changing means a
    rebuild."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    digest.update(f"{sys.version_info[:2]}".encode())
    return digest.hexdigest()


def ensure() -> Path:
    """Creates or refreshes `.bench/venv` when its stamp does not match, and returns its python."""
    fingerprint = _fingerprint()
    python = _python(VENV)
    if python.exists() and STAMP.exists() and STAMP.read_text().strip() == fingerprint:
        return python
    if not UV.exists():
        raise SystemExit(f"{UV} is missing: run `make install` first")
    # The base interpreter of the project's venv: same Python as the product runs on.
    base = getattr(sys, "_base_executable", sys.executable)
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    shutil.rmtree(VENV, ignore_errors=True)
    print(f"creating {VENV.relative_to(ROOT)} from {REQUIREMENTS.relative_to(ROOT)}", flush=True)
    subprocess.run(
        [str(UV), "venv", "--quiet", "--python", base, str(VENV)], env=env, check=True
    )  # fmt: skip
    subprocess.run(
        [str(UV), "pip", "install", "--quiet", "--python", str(python), "-r", str(REQUIREMENTS)],
        env=env, check=True,
    )  # fmt: skip
    STAMP.write_text(fingerprint + "\n")
    return python


if __name__ == "__main__":
    print(ensure())
