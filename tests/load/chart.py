"""Draws docs/benchmarks.png from the bars a bench run measured.

Runs in the bench-only environment (matplotlib is not a project dependency):
`.bench/venv/bin/python tests/load/chart.py bars.json out.png`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HOOKYARD = "#1f6feb"
REFERENCE = "#8c959f"


def draw(bars: list[dict[str, Any]], out: str) -> None:
    columns = min(len(bars), 3)
    rows = (len(bars) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(bars) :]:
        ax.axis("off")
    for ax, bar in zip(axes.flat, bars, strict=False):
        labels, values, colours, errors = [bar["label"]], [bar["hookyard"]], [HOOKYARD], []
        errors.append(_error(bar["hookyard"], bar["hookyard_range"]))
        if bar["reference"] is not None:
            labels.append(bar["reference_label"])
            values.append(bar["reference"])
            colours.append(REFERENCE)
            errors.append(_error(bar["reference"], bar["reference_range"]))
        low = [e[0] for e in errors]
        high = [e[1] for e in errors]
        ax.bar(labels, values, color=colours, yerr=[low, high], capsize=4)
        for x, value in enumerate(values):
            ax.annotate(f"{value:,.0f}" if value >= 10 else f"{value:,.1f}", (x, value),
                        ha="center", va="bottom", fontsize=9, xytext=(0, 3),
                        textcoords="offset points")  # fmt: skip
        ax.set_title(bar["title"], fontsize=10)
        ax.set_ylabel(bar["unit"], fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle("Hookyard beside its references (median of interleaved runs, min-max)",
                 fontsize=11)  # fmt: skip
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def _error(value: float, span: list[float] | None) -> tuple[float, float]:
    if not span:
        return (0.0, 0.0)
    return (max(value - span[0], 0.0), max(span[1] - value, 0.0))


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as spec:
        draw(json.load(spec), sys.argv[2])
