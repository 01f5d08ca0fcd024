"""Where a run's results go: rounds.jsonl as it runs, then summary.json and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedsys.config.schema import RunConfig
from fedsys.metrics.plots import plot_accuracy_vs_time, plot_round_durations
from fedsys.metrics.records import RoundRecord, RunResult
from fedsys.metrics.writers import JsonlRoundWriter, atomic_write_text, write_summary


class RunWriter:
    """Writes one run's output folder; ``rounds.jsonl`` grows as rounds finish."""

    def __init__(self, output_dir: Path, config: RunConfig) -> None:
        self.output_dir = output_dir
        self.config = config
        self.rounds = JsonlRoundWriter(output_dir / "rounds.jsonl")

    def write_round(self, record: RoundRecord) -> None:
        """Append one round (the file is truncated before the first)."""
        if record.round_idx == 0 and self.rounds.path.exists():
            self.rounds.path.unlink()
        self.rounds.write(record)

    def finish(self, result: RunResult) -> dict[str, Any]:
        """Write the config, summary and plots; return the summary."""
        import yaml

        atomic_write_text(
            self.output_dir / "config.yaml",
            yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False),
        )
        summary = result.summary(self.config.target_accuracy)
        write_summary(self.output_dir / "summary.json", summary)
        plot_accuracy_vs_time(
            [(self.config.selector.name, result)],
            self.output_dir / "accuracy_vs_time.png",
            self.config.target_accuracy,
        )
        plot_round_durations(result, self.output_dir / "round_durations.png")
        return summary
