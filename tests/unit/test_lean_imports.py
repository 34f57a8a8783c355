"""What the deployed targets load: `import main` stays free of the CLI, the database layer,
GCP clients and terminal libraries. Each check runs in a fresh interpreter, since this
test process has long imported all of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NEVER_ON_IMPORT = (
    "rich", "pygments", "typer", "hookyard", "sqlalchemy", "pg8000", "alembic", "structlog",
    "httpx",
)  # fmt: skip
NEVER_ON_IMPORT_GCP = ("google.cloud.pubsub", "google.cloud.tasks", "google.cloud.secretmanager")


def loaded_after(code: str) -> set[str]:
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def offending(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_import_main_loads_only_the_functions_framework() -> None:
    modules = loaded_after("import main")
    assert offending(modules, NEVER_ON_IMPORT + NEVER_ON_IMPORT_GCP) == []


def test_without_modules_hides_only_inside_the_block() -> None:
    code = """
from common.lean_imports import without_modules
with without_modules("colorsys", "os"):
    try:
        import colorsys
        hidden = False
    except ImportError:
        hidden = True
    import os  # imported at start-up, before the block: left alone
assert hidden, "colorsys was importable inside the block"
import colorsys
assert colorsys.rgb_to_hsv(0, 0, 0) == (0, 0, 0)
"""
    assert "colorsys" in loaded_after(code)
