"""README's "A two-minute tour", run as a newcomer runs it: the shell blocks are read from
README.md itself (so the text cannot drift from what works), the stack is `hookyard dev`
started from a fresh checkout directory, and the commands run in one bash session there.

A `# …` line right under a command is the output the README promises; JSON is compared as
JSON, and `…` inside an object means "more fields follow". A command whose output does not
match yet is repeated for a while, as a reader would look again: the worker applies events
moments after the 202.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.support.secret_scan import assert_log_clean
from tests.support.stack import free_port, wait_for

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
TOUR_HEADING = "## A two-minute tour"
ELIDED = "…"
SETTLE_S = 60.0  # how long a command may keep answering differently from the README


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)


def tour_blocks(readme: str) -> list[str]:
    """The ```sh blocks of the tour section, in order."""
    start = readme.index(TOUR_HEADING)
    end = readme.find("\n## ", start + len(TOUR_HEADING))
    section = readme[start : end if end != -1 else None]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)


def steps(block: str) -> list[Step]:
    """Commands (with `\\` continuations and here-documents) and the `# ` lines right under
    each; a comment after a blank line is prose."""
    found: list[Step] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            i += 1
            continue
        command = [line]
        heredoc = re.search(r"<<-?'?(\w+)'?", line)
        while command[-1].endswith("\\") or heredoc:
            i += 1
            command.append(lines[i])
            if heredoc and lines[i] == heredoc.group(1):
                heredoc = None
        i += 1
        step = Step("\n".join(command))
        while i < len(lines) and lines[i].startswith("# "):
            step.expected.append(lines[i][2:])
            i += 1
        found.append(step)
    return found


def _json_part(text: str, *, documented: bool) -> tuple[str, Any]:
    """`202 {...}` → ("202 ", {...}); the JSON is None when there is none or it is invalid."""
    at = text.find("{")
    if at == -1:
        return text, None
    body = text[at:]
    if documented:
        body = body.replace(f",{ELIDED}}}", f',"{ELIDED}":true}}')
    try:
        return text[:at], json.loads(body)
    except ValueError:
        return text, None


def _agrees(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return False
        wanted = {k: v for k, v in expected.items() if k != ELIDED}
        if ELIDED not in expected and set(wanted) != set(actual):
            return False
        return all(k in actual and _agrees(v, actual[k]) for k, v in wanted.items())
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_agrees(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual) and type(expected) is type(actual)


def matches(expected: list[str], output: str) -> bool:
    actual = output.splitlines()
    if len(actual) != len(expected):
        return False
    for want, got in zip(expected, actual, strict=True):
        want_prefix, want_json = _json_part(want, documented=True)
        got_prefix, got_json = _json_part(got, documented=False)
        if want_json is None:
            if want.split() != got.split():
                return False
        elif want_prefix != got_prefix or not _agrees(want_json, got_json):
            return False
    return True


class Shell:
    """One bash session fed command by command, so variables carry over as in a terminal."""

    def __init__(self, cwd: Path, env: dict[str, str], stderr: IO[bytes]) -> None:
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=cwd, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def run(self, command: str, timeout: float = 120.0) -> tuple[int, str]:
        """Exit status and stdout. Standard input is /dev/null: a command that reads it must
        not swallow the commands after it."""
        marker = f"__tour_{uuid.uuid4().hex}__"
        assert self.process.stdin is not None
        self.process.stdin.write(f"{{\n{command}\n}} </dev/null\nprintf '\\n{marker} %s\\n' $?\n")
        self.process.stdin.flush()
        output: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no end of {command!r} within {timeout}s") from None
            if line is None:
                raise AssertionError(f"bash exited during {command!r}")
            if line.startswith(marker):
                return int(line.split()[1]), "".join(output)[:-1]
            output.append(line)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A directory laid out like the repository for the tour: `.venv` is this interpreter's."""
    root = tmp_path / "checkout"
    root.mkdir()
    (root / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    assert (root / ".venv" / "bin" / "hookyard").exists(), "run the tests from the project .venv"
    return root


def newcomer_env(tmp_path: Path, port: int) -> dict[str, str]:
    """No HOOKYARD_* from the test run: the stack generates its own secrets, as on a first
    `make run`; the port is the only thing both terminals share."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKYARD_")}
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    # HOOKYARD_PUBSUB_PORT=0: the tour never uses gRPC, and 8085 may be taken by another run.
    return {**env, "HOOKYARD_PORT": str(port), "HOOKYARD_PUBSUB_PORT": "0", "TMPDIR": str(tmp)}


@pytest.fixture
def stack(checkout: Path, tmp_path: Path) -> Iterator[str]:
    """What `make run` runs, from the checkout: `.venv/bin/hookyard dev`."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "dev.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(checkout / ".venv" / "bin" / "hookyard"), "dev"], cwd=checkout,
            env=newcomer_env(tmp_path, port), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"hookyard dev exited early:\n{log_path.read_text()[-3000:]}")
        try:
            return httpx.get(f"{url}/health/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, timeout=90, interval=0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert_log_clean(log_path, checkout / ".hookyard")


def test_readme_tour_section_is_found_and_parsed() -> None:
    blocks = tour_blocks(README.read_text(encoding="utf-8"))
    assert blocks[0].strip() == "make run"
    tour = [step for block in blocks[1:] for step in steps(block)]
    assert sum(1 for step in tour if step.expected) >= 7
    assert any("openssl" in step.command for step in tour)
    heredoc = next(step for step in tour if "<<" in step.command)
    assert heredoc.command.endswith("\nEOF")


@pytest.mark.skipif(
    not (shutil.which("curl") and shutil.which("openssl")), reason="the tour uses curl and openssl"
)
def test_readme_tour_runs_verbatim_and_prints_what_it_says(
    checkout: Path, stack: str, tmp_path: Path
) -> None:
    blocks = tour_blocks(README.read_text(encoding="utf-8"))
    assert blocks[0].strip() == "make run"  # the `stack` fixture stands in for it
    port = int(stack.rsplit(":", 1)[1])
    with (tmp_path / "tour-stderr.log").open("wb") as stderr:
        shell = Shell(checkout, newcomer_env(tmp_path, port), stderr)
        try:
            for step in (step for block in blocks[1:] for step in steps(block)):
                deadline = time.monotonic() + SETTLE_S
                while True:
                    status, output = shell.run(step.command)
                    if status == 0 and (not step.expected or matches(step.expected, output)):
                        break
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"README command\n{step.command}\nexited {status} and printed\n"
                            f"{output}\ninstead of\n"
                            + "\n".join(step.expected)
                            + "\nstderr:\n"
                            + (tmp_path / "tour-stderr.log").read_text()[-2000:]
                        )
                    time.sleep(0.5)
        finally:
            shell.close()

    token = (checkout / ".hookyard" / "secrets" / "admin-token").read_text().strip()
    with httpx.Client(
        base_url=stack, timeout=10, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        account = client.get("/admin/accounts/acct_1").json()
        dead = client.get("/admin/dead-letters").json()["items"]
    # Sent twice by the CLI and once more by the curl recipe: applied once.
    assert account["available"] == 2500
    assert [(d["event_id"], d["reason"]) for d in dead] == [("evt_2", "unknown account 'acct_404'")]


@pytest.mark.parametrize(
    ("documented", "printed", "agree"),
    [
        ('202 {"a":1}', '202 {"a": 1}', True),
        ('202 {"a":1}', '401 {"a":1}', False),
        ('{"a":1}', '{"a":1,"b":2}', False),
        ('{"a":1,…}', '{"a":1,"b":2}', True),
        ('{"items":[{"a":1,…}],"n":null}', '{"items":[{"a":1,"b":2}],"n":null}', True),
        ('{"items":[{"a":1,…}],"n":null}', '{"items":[],"n":null}', False),
        ('{"a":0}', '{"a":false}', False),
        ("plain words", "plain   words", True),
    ],
)
def test_documented_output_comparison(documented: str, printed: str, agree: bool) -> None:
    assert matches([documented], printed) is agree
