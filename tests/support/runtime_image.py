"""What the Docker image holds, reproduced without Docker: its dependency set (from uv.lock,
as the builder's `uv sync --no-dev` installs it), the source paths its runtime stage copies
(read from the Dockerfile), and a way to run a target where nothing else can be imported."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import IO

import httpx
from packaging.markers import Marker
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "bin" / "uv"
DOCKERFILE = ROOT / "Dockerfile"
NOT_PACKAGES = {"..", "__pycache__", "__editable__"}


def runtime_distributions() -> set[str]:
    """Distributions the image installs on this platform: the project's dependencies with
    neither extras nor dependency groups, resolved by uv from the lock file."""
    exported = subprocess.run(
        [str(UV), "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project",
         "--no-header", "--no-annotate"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    names = set()
    for line in exported.splitlines():
        requirement, _, marker = line.partition(";")
        if not requirement.strip() or requirement.lstrip().startswith(("#", "-")):
            continue
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        names.add(canonicalize_name(requirement.split("==")[0].strip()))
    return names


def _module_paths(dist: metadata.Distribution) -> set[tuple[str, ...]]:
    """Every importable dotted prefix a distribution's files provide (`google`,
    `google.cloud`, `google.cloud.pubsub`, ...)."""
    paths: set[tuple[str, ...]] = set()
    for file in dist.files or ():
        parts = file.parts
        if not parts or parts[0] in NOT_PACKAGES or parts[0].endswith((".dist-info", ".data")):
            continue
        if len(parts) == 1 and not file.name.endswith((".py", ".so", ".pyd")):
            continue  # a .pth file or other loose file, not a module
        dotted = [*parts[:-1], parts[-1].split(".")[0]]
        for depth in range(1, len(dotted) + 1):
            paths.add(tuple(dotted[:depth]))
    return paths


def blocked_modules(runtime: Iterable[str]) -> set[str]:
    """The shortest dotted names that only distributions outside `runtime` provide: importing
    any of them (or anything below) fails in the image. Namespace packages shared with a
    runtime distribution (`google`) are blocked one level further down."""
    keep = {canonicalize_name(name) for name in runtime}
    provided: set[tuple[str, ...]] = set()
    foreign: list[set[tuple[str, ...]]] = []
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name == "hookyard":
            continue  # the project itself: its source is what the image copies
        if name in keep:
            provided |= _module_paths(dist)
        else:
            foreign.append(_module_paths(dist))
    blocked = set()
    for paths in foreign:
        for path in paths:
            if path in provided:
                continue
            if len(path) == 1 or path[:-1] in provided:
                blocked.add(".".join(path))
    return blocked


def image_sources() -> list[str]:
    """The repository paths the runtime stage copies from the build context."""
    sources: list[str] = []
    for stage in dockerfile_stages():
        sources = []
        for line in stage:
            words = line.split()
            if words[0].upper() == "COPY" and not any(w.startswith("--from") for w in words):
                sources.extend(w for w in words[1:-1] if not w.startswith("--"))
    return sources


def dockerfile_instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = (raw.strip() for raw in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def dockerfile_stages() -> list[list[str]]:
    """The instructions of each stage, its FROM first (global ARGs before it are left out)."""
    stages: list[list[str]] = []
    for line in dockerfile_instructions():
        if line.split()[0].upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def copy_image_tree(dest: Path) -> Path:
    """The runtime stage's /app, as a directory: only what the Dockerfile copies."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for source in image_sources():
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, dest / source, ignore=ignore)
        else:
            shutil.copy2(origin, dest / source)
    return dest


PRELUDE = """
import runpy, sys

BLOCKED = frozenset({blocked!r})
sys.path[:] = [p for p in sys.path if p.rstrip("/") != {root!r}]


class NotInTheImage:
    def find_spec(self, name, path=None, target=None):
        parts = name.split(".")
        if any(".".join(parts[:i]) in BLOCKED for i in range(1, len(parts) + 1)):
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the image)", name=name)
        return None


loaded = sorted(m for m in BLOCKED if m in sys.modules)
assert not loaded, f"imported before the block: {{loaded}}"
sys.meta_path.insert(0, NotInTheImage())
sys.argv = sys.argv[1:]
if sys.argv[0].endswith(".py"):
    runpy.run_path(sys.argv[0], run_name="__main__")
else:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def as_in_image(module: str, args: list[str], blocked: Iterable[str]) -> list[str]:
    """`python -m module args` (or `python script.py args`), run from a copy of the image's
    /app (the working directory) by an interpreter that cannot import `blocked` nor anything
    from the repository checkout."""
    prelude = PRELUDE.format(blocked=sorted(blocked), root=str(ROOT))
    return [sys.executable, "-c", prelude, module, *args]


def functions_framework_args(target: str, source: Path, port: int) -> list[str]:
    """What the image's CMD passes (`--target "$TARGET" --source main.py`, PORT as a flag)."""
    return ["--target", target, "--source", str(source), "--port", str(port), "--host", "127.0.0.1"]


def functions_framework() -> str:
    return str(Path(sys.executable).with_name("functions-framework"))


@contextmanager
def serving_target(
    command: list[str],
    port: int,
    env: Mapping[str, str],
    cwd: Path,
    probe: str = "/",
    poll_s: float = 0.01,
) -> Iterator[str]:
    """Start a functions-framework server in its own process group; yield its URL once it
    answers any HTTP response on `probe`; kill the whole group (gunicorn's workers too)."""
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            command, cwd=cwd, env=dict(env), start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_answering(proc, url + probe, stderr, timeout=120, poll_s=poll_s)
            yield url
        finally:
            stop_group(proc)


def wait_until_answering(
    proc: subprocess.Popen[bytes], url: str, stderr: IO[bytes], timeout: float, poll_s: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stderr.seek(0)
            tail = stderr.read().decode(errors="replace")[-4000:]
            raise RuntimeError(f"the server exited with {proc.returncode}: {tail}")
        try:
            httpx.get(url, timeout=5)
            return
        except httpx.TransportError:
            time.sleep(poll_s)
    raise TimeoutError(f"nothing answered on {url} within {timeout} s")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """The group, not only its leader: gunicorn's workers outlive a killed arbiter."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
