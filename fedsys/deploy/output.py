"""A deployment's output folder, in the simulator's format: rounds.jsonl, summary, plots.

``rounds.jsonl`` is rewritten from the checkpoint's records when a server resumes, so
a round the killed server was writing never appears twice.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from fedsys.config.schema import RunConfig
from fedsys.metrics.plots import plot_accuracy_vs_time, plot_round_durations
from fedsys.metrics.records import RoundRecord, RunResult
from fedsys.metrics.writers import JsonlRoundWriter, atomic_write_text, write_summary

ROUNDS_FILE = "rounds.jsonl"


class DeployWriter:
    """Writes one deployment's results as rounds finish."""

    def __init__(self, output_dir: Path, config: RunConfig) -> None:
        self.output_dir = output_dir
        self.config = config
        self.rounds = JsonlRoundWriter(output_dir / ROUNDS_FILE)

    def start(self, records: list[RoundRecord]) -> None:
        """Write the config and the rounds already done (none, or a checkpoint's)."""
        atomic_write_text(
            self.output_dir / "config.yaml",
            yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False),
        )
        lines = "".join(json.dumps(r.to_json()) + "\n" for r in records)
        atomic_write_text(self.output_dir / ROUNDS_FILE, lines)

    def write_port(self, path: Path, port: int) -> None:
        """Tell whoever started the server which port it bound (tests, ``deploy local``)."""
        atomic_write_text(path, f"{port}\n")

    def write_round(self, record: RoundRecord) -> None:
        """Append one finished round."""
        self.rounds.write(record)

    def finish(self, result: RunResult, extra: dict | None = None) -> dict:
        """Summary (plus ``extra`` figures) and plots; returns the summary."""
        summary = result.summary(self.config.target_accuracy)
        summary.update(extra or {})
        summary["runtime"] = "deploy"
        summary["time_unit"] = "wall seconds"
        write_summary(self.output_dir / "summary.json", summary)
        plot_accuracy_vs_time(
            [(f"deploy ({self.config.selector.name})", result)],
            self.output_dir / "accuracy_vs_time.png",
            self.config.target_accuracy,
        )
        plot_round_durations(result, self.output_dir / "round_durations.png")
        return summary
