"""Where a run's results go, so that a folder never mixes two runs.

``config.yaml`` (the resolved config, headed by the fedsys version) is written before
round 0; ``rounds.jsonl`` grows by one flushed line per round; ``summary.json`` is
written atomically when the run ends, however it ends, with its ``status``. An
existing non-empty folder is refused unless the caller asks to overwrite it, which
removes the files a previous run wrote there (and nothing else). ``rounds.csv`` and
``tensorboard/`` event files follow ``metrics.csv`` and ``metrics.tensorboard``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from fedsys import __version__
from fedsys.config.schema import RunConfig
from fedsys.metrics.plots import plot_accuracy_vs_time, plot_round_durations
from fedsys.metrics.records import RoundRecord, RunResult
from fedsys.metrics.tables import CsvRoundWriter, TensorBoardRoundWriter
from fedsys.metrics.writers import JsonlRoundWriter, atomic_write_text, write_summary
from fedsys.parts.checkpoint import CHECKPOINT_NAME

CONFIG_NAME = "config.yaml"
RUN_FILES = (
    CONFIG_NAME,
    "rounds.jsonl",
    "rounds.csv",
    "summary.json",
    CHECKPOINT_NAME,
    "accuracy_vs_time.png",
    "round_durations.png",
)
RUN_FOLDERS = ("tensorboard",)


class OutputExistsError(FileExistsError):
    """The output folder already holds files and overwriting was not asked for."""


class RunWriter:
    """Writes one run's output folder.

    Parameters
    ----------
    output_dir
        The run folder.
    config
        The resolved run config, written to ``config.yaml``.
    """

    def __init__(self, output_dir: Path, config: RunConfig) -> None:
        self.output_dir = output_dir
        self.config = config
        self.rounds = JsonlRoundWriter(output_dir / "rounds.jsonl")
        self.csv = CsvRoundWriter(output_dir / "rounds.csv") if config.metrics.csv else None
        self.tensorboard: TensorBoardRoundWriter | None = None

    def _open_tensorboard(self) -> None:
        if self.config.metrics.tensorboard and self.tensorboard is None:
            self.tensorboard = TensorBoardRoundWriter(self.output_dir / "tensorboard")

    def close(self) -> None:
        """Close the TensorBoard event file, if one is open."""
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None

    @property
    def checkpoint_path(self) -> Path:
        """Where the run's checkpoint lives."""
        return self.output_dir / CHECKPOINT_NAME

    def start(self, overwrite: bool = False) -> None:
        """Claim the folder for a new run and write ``config.yaml``.

        Raises
        ------
        OutputExistsError
            If the folder is not empty and ``overwrite`` is False.
        """
        folder = self.output_dir
        if folder.exists() and not folder.is_dir():
            raise OutputExistsError(f"output path {folder} exists and is not a folder")
        if folder.is_dir() and any(folder.iterdir()):
            if not overwrite:
                raise OutputExistsError(
                    f"output folder {folder} is not empty: pass --overwrite to replace its "
                    f"run files, --resume {folder} to continue it, or choose another "
                    "--output-dir"
                )
            _remove_run_files(folder)
        folder.mkdir(parents=True, exist_ok=True)
        header = f"# resolved config written by fedsys {__version__}; run it with fedsys run\n"
        body = yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False)
        atomic_write_text(folder / CONFIG_NAME, header + body)
        self._open_tensorboard()

    def resume(self, records: list[RoundRecord]) -> None:
        """Continue a run: the round files hold exactly the checkpoint's records."""
        self.rounds.rewrite(records)
        if self.csv is not None:
            self.csv.rewrite(records)
        self._open_tensorboard()

    def write_round(self, record: RoundRecord) -> None:
        """Append one round to every round output, flushed to disk."""
        self.rounds.write(record)
        if self.csv is not None:
            self.csv.write(record)
        if self.tensorboard is not None:
            self.tensorboard.write(record)

    def finish(self, result: RunResult) -> dict[str, Any]:
        """Write the summary (with the result's status) and plots; return the summary."""
        summary = self.write_summary(result)
        plot_accuracy_vs_time(
            [(self.config.selector.name, result)],
            self.output_dir / "accuracy_vs_time.png",
            self.config.target_accuracy,
        )
        plot_round_durations(result, self.output_dir / "round_durations.png")
        return summary

    def write_summary(self, result: RunResult, **extra: Any) -> dict[str, Any]:
        """Write ``summary.json`` atomically and return it."""
        summary = {**result.summary(self.config.target_accuracy), **extra}
        summary["fedsys_version"] = __version__
        write_summary(self.output_dir / "summary.json", summary)
        return summary


def _remove_run_files(folder: Path) -> None:
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        if (folder / name).is_dir():
            shutil.rmtree(folder / name)
