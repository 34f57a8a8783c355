"""Running checkov offline from its own environment, and reading its JSON report.

checkov lives in `.tools/checkov/` (Makefile: `install-checkov`, from tools/checkov/uv.lock) so
its pins never meet the project's. Left to its defaults it looks up a newer release on PyPI
and downloads guidelines and policy metadata from Prisma Cloud; the flags and variables here
turn both off, and the variables that could quietly skip checks or add platform policies
are dropped from the environment it inherits."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.infra_tree import ROOT, shown

CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
CONFIG_NAMES = (".checkov.yaml", ".checkov.yml")
TIMEOUT_S = 600

# CKV_SKIP_CHECK / CKV_CHECK would narrow the run, BC_API_KEY would bring platform policies
# and uploads, LOG_LEVEL=DEBUG would flood the output we keep for failures.
_INHERITED_PREFIXES = ("CKV_", "CHECKOV_", "BC_", "PRISMA_")
_INHERITED_NAMES = {"DOWNLOAD_EXTERNAL_MODULES", "EXTERNAL_MODULES_DIR", "LOG_LEVEL"}
_OFFLINE = {
    "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
    "BC_SKIP_MAPPING": "TRUE",
    "DOWNLOAD_EXTERNAL_MODULES": "false",
}


def checkov_command(tree: Path) -> list[str]:
    return [
        str(CHECKOV),
        "--directory", str(tree),
        "--framework", "terraform",
        "--output", "json",
        "--compact",
        "--quiet",
        "--skip-download",
        "--download-external-modules", "false",
    ]  # fmt: skip


def checkov_environment(inherited: Mapping[str, str], home: Path) -> dict[str, str]:
    """`home` replaces HOME so a developer's ~/.checkov.yaml cannot change the result."""
    kept = {
        name: value
        for name, value in inherited.items()
        if not name.startswith(_INHERITED_PREFIXES) and name not in _INHERITED_NAMES
    }
    return {**kept, **_OFFLINE, "HOME": str(home)}


@dataclass(frozen=True)
class Finding:
    check_id: str
    title: str
    resource: str
    file: str
    lines: tuple[int, int]

    def describe(self) -> str:
        return f"{self.check_id} {self.resource} at {self.file}:{self.lines[0]}: {self.title}"


@dataclass(frozen=True)
class Report:
    resource_count: int
    parsing_errors: int
    failed: tuple[Finding, ...]


def parse_report(stdout: str, tree: Path) -> Report:
    """checkov prints one object per framework, a list when there are several, and a bare
    summary (no `results`) when it found nothing to scan."""
    parsed: Any = json.loads(stdout)
    reports: list[dict[str, Any]] = parsed if isinstance(parsed, list) else [parsed]
    resources = errors = 0
    failed: list[Finding] = []
    for report in reports:
        summary = report.get("summary", report)
        resources += int(summary.get("resource_count", 0))
        errors += int(summary.get("parsing_errors", 0))
        for check in report.get("results", {}).get("failed_checks", []):
            first, last = check.get("file_line_range") or (0, 0)
            failed.append(
                Finding(
                    check_id=str(check["check_id"]),
                    title=str(check.get("check_name", "")),
                    resource=str(check.get("resource", "")),
                    file=shown(tree / str(check.get("file_path", "")).lstrip("/")),
                    lines=(int(first), int(last)),
                )
            )
    return Report(resource_count=resources, parsing_errors=errors, failed=tuple(failed))
