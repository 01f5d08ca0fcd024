"""Plots of a run: accuracy against virtual time, and the distribution of round durations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from fedsys.metrics.records import RunResult


def plot_accuracy_vs_time(
    runs: Sequence[tuple[str, RunResult]], path: Path, target_accuracy: float | None = None
) -> None:
    """Accuracy over virtual hours, one line per labelled run."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, result in runs:
        points = [(r.end_s / 3600.0, r.accuracy) for r in result.records if r.accuracy is not None]
        if points:
            hours, accuracy = zip(*points, strict=True)
            ax.plot(hours, accuracy, marker=".", label=label)
    if target_accuracy is not None:
        ax.axhline(target_accuracy, color="grey", linestyle="--", linewidth=1, label="target")
    ax.set_xlabel("virtual time (hours)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_round_durations(result: RunResult, path: Path) -> None:
    """Histogram of virtual round durations."""
    fig, ax = plt.subplots(figsize=(6, 4))
    durations = [r.duration_s for r in result.records]
    # Identical durations (uniform devices) leave no range to cut into 30 bins.
    ax.hist(durations, bins=min(30, max(1, len(set(durations)))))
    ax.set_xlabel("round duration (virtual seconds)")
    ax.set_ylabel("rounds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
