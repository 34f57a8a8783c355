"""Evaluates infra's provider-free modules with the real `terraform` binary, offline.

`modules/topology` and `modules/access` declare no provider, so `terraform init` needs no
download: a throwaway root module that calls them is initialised and applied (outputs only,
no resource) in a temporary directory, and its outputs come back as JSON. Where terraform is
not installed the test is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
TERRAFORM_MISSING = "terraform not on PATH: the offline Terraform checks need it (CI has 1.11)"
RUN_BOUND_S = 300


def terraform_binary() -> str:
    found = shutil.which("terraform")
    if found is None:
        pytest.skip(TERRAFORM_MISSING)
    return found


def _hcl(value: Any) -> str:
    """A Python value as an HCL expression (JSON is a subset, except for keys)."""
    return json.dumps(value)


def evaluate(workdir: Path, modules: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Applies a root that calls each module (name -> (module dir, inputs)) and returns each
    module's outputs. An input given as `{"$module": "name"}` passes that module's outputs."""
    terraform = terraform_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    blocks = []
    for name, (source, inputs) in modules.items():
        lines = [f'module "{name}" {{', f"  source = {_hcl(str(INFRA / source))}"]
        for key, value in inputs.items():
            if isinstance(value, dict) and set(value) == {"$module"}:
                lines.append(f"  {key} = module.{value['$module']}")
            else:
                lines.append(f"  {key} = {_hcl(value)}")
        lines.append("}")
        lines.append(f'output "{name}" {{\n  value = module.{name}\n}}')
        blocks.append("\n".join(lines))
    (workdir / "main.tf").write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    rc = workdir / "terraformrc"
    rc.write_text("", encoding="utf-8")
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(rc),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
        "TF_DATA_DIR": str(workdir / ".terraform"),
    }
    for args in (
        ["init", "-backend=false", "-input=false", "-no-color"],
        ["apply", "-auto-approve", "-input=false", "-no-color", "-lock=false"],
    ):
        run(terraform, workdir, args, env)
    out = run(terraform, workdir, ["output", "-json", "-no-color"], env)
    return {name: entry["value"] for name, entry in json.loads(out).items()}


class TerraformFailed(AssertionError):
    def __init__(self, args: list[str], output: str) -> None:
        super().__init__(f"terraform {' '.join(args)} failed:\n{output}")
        self.output = output


def run(terraform: str, workdir: Path, args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [terraform, f"-chdir={workdir}", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=RUN_BOUND_S,
        check=False,
    )
    if done.returncode != 0:
        raise TerraformFailed(args, done.stdout + done.stderr)
    return done.stdout
