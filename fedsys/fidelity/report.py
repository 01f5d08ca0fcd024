"""What `fedsys fidelity` writes: the comparison as JSON and the overlay plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from fedsys.fidelity.compare import FidelityReport
from fedsys.metrics.records import RoundRecord
from fedsys.metrics.writers import atomic_write_text, dumps


def write_json(report: FidelityReport, path: Path) -> None:
    """``fidelity.json``: totals and every round's comparison."""
    atomic_write_text(path, dumps(report.to_json(), indent=2))


def plot_overlay(
    sim: list[RoundRecord], real: list[RoundRecord], path: Path, target: float | None = None
) -> None:
    """Both timelines on one time axis: accuracy over time and each round's span."""
    fig, (acc_ax, span_ax) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    for label, records, colour, row in (("simulated", sim, "C0", 1), ("measured", real, "C1", 0)):
        if not records:
            continue
        origin = records[0].start_s
        points = [(r.end_s - origin, r.accuracy) for r in records if r.accuracy is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            acc_ax.plot(xs, ys, marker="o", color=colour, label=label)
        for r in records:
            span_ax.barh(
                row,
                r.end_s - r.start_s,
                left=r.start_s - origin,
                height=0.6,
                color=colour,
                alpha=0.5 + 0.5 * (r.round_idx % 2),
                edgecolor="white",
            )
    if target is not None:
        acc_ax.axhline(target, color="grey", linestyle="--", linewidth=1, label="target")
    acc_ax.set_ylabel("test accuracy")
    acc_ax.grid(alpha=0.3)
    acc_ax.legend()
    span_ax.set_yticks([0, 1], ["measured", "simulated"])
    span_ax.set_xlabel("seconds since the first round started (device time, scaled)")
    span_ax.set_title("rounds", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
