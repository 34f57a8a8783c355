"""`terraform fmt` needs no provider, so it is the one Terraform command that runs offline."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.infra_tree import infra_dir, shown


def test_terraform_is_formatted() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform not on PATH: `terraform fmt -check` did not run")
    tree = infra_dir()
    completed = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", "-no-color", str(tree)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if completed.returncode != 0:
        pytest.fail(
            f"`terraform fmt -check -recursive {shown(tree)}` exited {completed.returncode}; "
            f"run `terraform fmt -recursive {shown(tree)}`.\n{completed.stdout}{completed.stderr}",
            pytrace=False,
        )
