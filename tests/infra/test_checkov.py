"""checkov over the Terraform tree: no failed check, and every skip says why in the code."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.checkov_run import (
    CHECKOV,
    CONFIG_NAMES,
    TIMEOUT_S,
    checkov_command,
    checkov_environment,
    parse_report,
)
from tests.support.infra_tree import (
    MIN_REASON_WORDS,
    infra_dir,
    shown,
    skip_comments,
    terraform_files,
)


@pytest.mark.timeout(TIMEOUT_S + 60)
def test_checkov_leaves_no_failed_check(tmp_path: Path) -> None:
    assert CHECKOV.is_file(), (
        f"{shown(CHECKOV)} is missing: `make test` installs it (or `make install-checkov` "
        "alone, from tools/checkov/uv.lock)"
    )
    tree = infra_dir()
    assert terraform_files(tree), f"no .tf file under {shown(tree)} for checkov to scan"
    completed = subprocess.run(
        checkov_command(tree),
        cwd=tmp_path,
        env=checkov_environment(os.environ, home=tmp_path),
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    # 0: nothing failed, 1: something failed (listed in the report); anything else: a crash.
    assert completed.returncode in (0, 1), (
        f"checkov exited {completed.returncode}:\n{completed.stderr[-4000:]}"
    )
    report = parse_report(completed.stdout, tree)
    assert report.parsing_errors == 0, (
        f"checkov could not parse {report.parsing_errors} file(s) under {shown(tree)}; "
        f"run `{shown(CHECKOV)} -d {shown(tree)} --framework terraform` to see which"
    )
    assert report.resource_count > 0, f"checkov found no resource under {shown(tree)}"
    if report.failed:
        pytest.fail(
            f"{len(report.failed)} failed checkov check(s); fix each, or skip it inline with "
            "`#checkov:skip=<ID>:<why>` in the resource:\n"
            + "\n".join(finding.describe() for finding in report.failed),
            pytrace=False,
        )


def test_every_checkov_skip_says_why() -> None:
    tree = infra_dir()
    unjustified = [
        f"{shown(path)}:{skip.line}: checkov:skip={skip.ids or '?'}"
        + (f":{skip.reason}" if skip.reason else "")
        for path in terraform_files(tree)
        for skip in skip_comments(path.read_text(encoding="utf-8"))
        if not skip.justified()
    ]
    if unjustified:
        pytest.fail(
            "checkov skips need a check id and, after the second colon, a reason of at least "
            f"{MIN_REASON_WORDS} words:\n" + "\n".join(unjustified),
            pytrace=False,
        )


def test_checks_are_skipped_only_inline() -> None:
    """checkov reads `.checkov.yaml` beside the scanned directory: a skip-check there would
    silence checks with no reason next to the resource."""
    tree = infra_dir()
    configs = [shown(tree / name) for name in CONFIG_NAMES if (tree / name).exists()]
    assert not configs, f"skip checks inline with a reason instead of in {', '.join(configs)}"
