"""What the deployed code names in GCP, found by reading its source (ast), not by running it.

The consistency tests compare these names with topology.yaml and with Terraform, so a
secret read, a queue filled or a topic published to without being declared fails
`make test` instead of failing in production with PERMISSION_DENIED or NOT_FOUND.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOYED = ("main.py", "common", "composition", "functions", "workers", "handlers")
"""What the Dockerfile copies into the image."""
SOURCE_SECRET = "<each source's secret>"
"""A read of `source.secret`: the webhook secret of whichever source a request names."""


@dataclass(frozen=True)
class Reference:
    path: str
    line: int
    name: str | None
    """None when the argument is not a literal or a module constant: the test says where."""

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def deployed_files(root: Path = ROOT) -> list[Path]:
    files: list[Path] = []
    for entry in DEPLOYED:
        path = root / entry
        files.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return files


_IN_PROGRESS: set[Path] = set()


@cache
def _constants(path: Path, root: Path) -> dict[str, str]:
    """Module-level `NAME = "text"`, and names imported from modules that define them
    (an import cycle contributes what was found before it)."""
    _IN_PROGRESS.add(path)
    try:
        return _read_constants(path, root)
    finally:
        _IN_PROGRESS.discard(path)


def _read_constants(path: Path, root: Path) -> dict[str, str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            if isinstance(node.value.value, str):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = node.value.value
        elif (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            found[node.target.id] = node.value.value
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            source = root / Path(*node.module.split("."))
            source = source.with_suffix(".py") if source.with_suffix(".py").is_file() else None
            if source is None or source in _IN_PROGRESS:
                continue
            theirs = _constants(source, root)
            for alias in node.names:
                if alias.name in theirs:
                    found[alias.asname or alias.name] = theirs[alias.name]
    return found


def _resolve(node: ast.expr, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if isinstance(node, ast.Attribute) and node.attr == "secret":
        return SOURCE_SECRET
    return None


def _calls(paths: list[Path], root: Path) -> list[tuple[Path, ast.Call, dict[str, str]]]:
    calls = []
    for path in paths:
        constants = _constants(path, root)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                calls.append((path, node, constants))
    return calls


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return None


def secret_reads(paths: list[Path] | None = None, root: Path = ROOT) -> list[Reference]:
    """Every `<store>.values(name)` and `values_or_unavailable(store, name)`: the two ways
    code reads a secret (common/secrets.py)."""
    found = []
    for path, call, constants in _calls(paths or deployed_files(root), root):
        callee = _callee(call)
        if callee == "values" and len(call.args) == 1 and not call.keywords:
            argument = call.args[0]
        elif callee == "values_or_unavailable" and len(call.args) == 2:
            argument = call.args[1]
        else:
            continue
        if path.name == "secrets.py" and path.parent.name == "common":
            continue  # the helper itself, passing its parameter on
        rel = str(path.relative_to(root))
        found.append(Reference(rel, call.lineno, _resolve(argument, constants)))
    return found


def message_topics(paths: list[Path] | None = None, root: Path = ROOT) -> list[Reference]:
    """Topics handlers publish to: `Message(topic=...)` (workers/plugin.py)."""
    found = []
    for path, call, constants in _calls(paths or deployed_files(root), root):
        if _callee(call) != "Message":
            continue
        topic = next((k.value for k in call.keywords if k.arg == "topic"), None)
        if topic is None and call.args:
            topic = call.args[0]
        if topic is not None:
            rel = str(path.relative_to(root))
            found.append(Reference(rel, call.lineno, _resolve(topic, constants)))
    return found


def queue_constants(paths: list[Path] | None = None, root: Path = ROOT) -> dict[str, str]:
    """Module constants `*_QUEUE`: the queue names tasks are created on and routed by."""
    found: dict[str, str] = {}
    for path in paths or deployed_files(root):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id.endswith("_QUEUE"):
                        found[f"{path.relative_to(root)}:{target.id}"] = node.value.value
    return found
