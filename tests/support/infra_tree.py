"""The Terraform tree the offline infra checks read, and the inline checkov skips in it.

The tests target `<repo>/infra`; `TEST_INFRA_DIR` points them at another tree, so a sample
with a known flaw can show that each check fails when it should."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MIN_REASON_WORDS = 3

# The shape checkov 3.3 honours (checkov/common/comment/enum.py): ids, then an optional reason
# after a colon. A skip whose reason is missing still silences the check, hence the test.
_SKIP = re.compile(
    r"(?P<marker>(?:checkov|bridgecrew|cortex):skip=) *"
    r"(?P<ids>[A-Za-z_\d-]+(?:,[A-Za-z_\d-]+)*)?(?::(?P<reason>[^\n]*))?"
)


def infra_dir() -> Path:
    return Path(os.environ.get("TEST_INFRA_DIR") or ROOT / "infra").resolve()


def terraform_files(tree: Path) -> list[Path]:
    """Every `.tf` file, `.terraform/` (providers and modules `init` fetched) left out."""
    if not tree.is_dir():
        return []
    return sorted(
        path
        for path in tree.rglob("*.tf")
        if path.is_file() and ".terraform" not in path.relative_to(tree).parts
    )


def shown(path: Path) -> str:
    """A path as a developer would type it: relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


@dataclass(frozen=True)
class SkipComment:
    line: int
    ids: str
    reason: str

    def justified(self) -> bool:
        return bool(self.ids) and len(self.reason.split()) >= MIN_REASON_WORDS


def skip_comments(text: str) -> list[SkipComment]:
    return [
        SkipComment(
            line=text.count("\n", 0, match.start()) + 1,
            ids=match["ids"] or "",
            reason=(match["reason"] or "").strip(),
        )
        for match in _SKIP.finditer(text)
    ]
