"""Every `.tf` file parses as HCL2, without `terraform init` (no provider can be fetched here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.support.infra_tree import infra_dir, shown, terraform_files

TREE = infra_dir()
FILES = terraform_files(TREE)


@pytest.mark.parametrize(
    "path",
    FILES or [None],
    ids=[str(path.relative_to(TREE)) for path in FILES] or ["no-tf-files"],
)
def test_terraform_file_parses(path: Path | None) -> None:
    assert path is not None, f"no .tf file under {shown(TREE)}"
    parsed: Any = None
    problem = ""
    with path.open(encoding="utf-8") as source:
        try:
            parsed = hcl2.load(source)
        except Exception as error:  # lark's parse errors share no base class with I/O ones
            problem = str(error)
    if problem:
        pytest.fail(f"{shown(path)} does not parse as HCL2: {problem}", pytrace=False)
    assert isinstance(parsed, dict)
