"""A run's output folder, written the same way by every runtime.

``config.yaml`` (the resolved config, headed by the fedsys version) is written before
round 0; ``rounds.jsonl`` grows by one flushed line per round (and ``clients.jsonl`` by the
round's client timeline, when the runtime records one); ``summary.json`` is
written atomically when the run ends, however it ends, with its ``status``. A folder
that holds another run's files is refused unless the caller overwrites it, which
removes the files a previous run wrote there (and nothing else), or resumes that run,
which rewrites the round files from the checkpoint's records so that a round the
stopped run was writing never appears twice. ``rounds.csv`` and ``tensorboard/``
event files are written when asked for.

The file names of a run folder live here and only here.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from fedsys.metrics.records import RoundRecord, RunResult, record_from_json
from fedsys.metrics.tables import CsvRoundWriter, TensorBoardRoundWriter
from fedsys.metrics.timeline import TimelineWriter, without_timeline
from fedsys.metrics.writers import JsonlRoundWriter, atomic_write_text, write_summary

CONFIG_FILE = "config.yaml"
ROUNDS_FILE = "rounds.jsonl"
CLIENTS_FILE = "clients.jsonl"
STATUS_FILE = "server_status.jsonl"
SILO_FILE = "silo_tasks.jsonl"
ROUNDS_CSV_FILE = "rounds.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
ACCURACY_PLOT_FILE = "accuracy_vs_time.png"
DURATIONS_PLOT_FILE = "round_durations.png"
TENSORBOARD_FOLDER = "tensorboard"
RUN_FILES = (
    CONFIG_FILE,
    ROUNDS_FILE,
    CLIENTS_FILE,
    STATUS_FILE,
    SILO_FILE,
    ROUNDS_CSV_FILE,
    SUMMARY_FILE,
    CHECKPOINT_FILE,
    ACCURACY_PLOT_FILE,
    DURATIONS_PLOT_FILE,
)
"""Files a run writes; a folder holding any of them (or ``RUN_FOLDERS``) holds a run."""
RUN_FOLDERS = (TENSORBOARD_FOLDER,)


class OutputExistsError(FileExistsError):
    """The output folder holds another run and overwriting was not asked for."""


def run_files_in(folder: Path) -> list[str]:
    """Names of the run files and folders ``folder`` holds (empty: no run there)."""
    if not folder.is_dir():
        return []
    return [name for name in (*RUN_FILES, *RUN_FOLDERS) if (folder / name).exists()]


class RunFolder:
    """Writes one run's output folder.

    Parameters
    ----------
    output_dir
        The run folder.
    config
        The resolved run config as JSON-ready values, written to ``config.yaml``.
    target_accuracy
        The accuracy whose time-to-accuracy the summary and plot report.
    label
        The run's name in the accuracy plot's legend.
    csv, tensorboard
        Also write ``rounds.csv`` / ``tensorboard/`` event files.
    summary_fields
        Fields every summary of this run carries (e.g. which runtime wrote it).
    clock
        ``virtual`` (a simulation's records) or ``wall`` (a real run's): which times
        the summary reports (see :meth:`RunResult.summary`).
    """

    def __init__(
        self,
        output_dir: Path,
        config: Mapping[str, Any],
        target_accuracy: float | None = None,
        label: str = "run",
        csv: bool = False,
        tensorboard: bool = False,
        summary_fields: Mapping[str, Any] | None = None,
        clock: Literal["virtual", "wall"] = "virtual",
    ) -> None:
        self.output_dir = output_dir
        self.config = config
        self.target_accuracy = target_accuracy
        self.label = label
        self.csv = csv
        self.tensorboard = tensorboard
        self.summary_fields = dict(summary_fields or {})
        self.clock = clock
        self._jsonl = JsonlRoundWriter(output_dir / ROUNDS_FILE)
        self._timelines = TimelineWriter(output_dir / CLIENTS_FILE)
        self._csv = CsvRoundWriter(output_dir / ROUNDS_CSV_FILE) if csv else None
        self._tensorboard: TensorBoardRoundWriter | None = None

    @property
    def checkpoint_path(self) -> Path:
        """Where the run's checkpoint lives."""
        return self.output_dir / CHECKPOINT_FILE

    def start(self, overwrite: bool = False) -> None:
        """Claim the folder for a new run and write ``config.yaml``.

        Files that are not a run's (certificates, logs, notes) are left alone.

        Raises
        ------
        OutputExistsError
            If the folder holds another run and ``overwrite`` is False.
        """
        folder = self.output_dir
        if folder.exists() and not folder.is_dir():
            raise OutputExistsError(f"output path {folder} exists and is not a folder")
        found = run_files_in(folder)
        if found:
            if not overwrite:
                raise OutputExistsError(
                    f"output folder {folder} is not empty (it holds another run: "
                    f"{', '.join(found)}): pass --overwrite to replace its run files, "
                    f"--resume {folder} to continue it, or choose another --output-dir"
                )
            _remove_run_files(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self._open_tensorboard()

    def write_config(self) -> None:
        """Write ``config.yaml`` atomically (a resumed deployment records its new settings)."""
        from fedsys import __version__

        header = f"# resolved config written by fedsys {__version__}; run it with fedsys run\n"
        body = yaml.safe_dump(dict(self.config), sort_keys=False)
        atomic_write_text(self.output_dir / CONFIG_FILE, header + body)

    def resume(self, records: list[RoundRecord]) -> None:
        """Continue a run: the round files hold exactly the checkpoint's records."""
        self._timelines.rewrite(records)
        records = [without_timeline(r) for r in records]
        self._jsonl.rewrite(records)
        if self._csv is not None:
            self._csv.rewrite(records)
        self._open_tensorboard()

    def write_round(self, record: RoundRecord) -> None:
        """Append one round to every round output, flushed to disk.

        A timeline in ``record.extra`` goes to ``clients.jsonl`` (first, so a reader
        that sees the round finds its timeline), never to the other outputs.
        """
        self._timelines.write(record)
        record = without_timeline(record)
        self._jsonl.write(record)
        if self._csv is not None:
            self._csv.write(record)
        if self._tensorboard is not None:
            self._tensorboard.write(record)

    def write_port(self, path: Path, port: int) -> None:
        """Tell whoever started a server which port it bound (tests, launchers)."""
        atomic_write_text(path, f"{port}\n")

    def finish(self, result: RunResult, **extra: Any) -> dict[str, Any]:
        """Write the summary (with ``extra`` figures) and the plots; return the summary."""
        from fedsys.metrics.plots import plot_accuracy_vs_time, plot_round_durations

        summary = self.write_summary(result, **extra)
        plot_accuracy_vs_time(
            [(self.label, result)],
            self.output_dir / ACCURACY_PLOT_FILE,
            self.target_accuracy,
        )
        plot_round_durations(result, self.output_dir / DURATIONS_PLOT_FILE)
        return summary

    def write_summary(self, result: RunResult, **extra: Any) -> dict[str, Any]:
        """Write ``summary.json`` atomically and return it."""
        from fedsys import __version__

        summary = {
            **result.summary(self.target_accuracy, self.clock),
            **extra,
            **self.summary_fields,
        }
        summary["fedsys_version"] = __version__
        write_summary(self.output_dir / SUMMARY_FILE, summary)
        return summary

    def close(self) -> None:
        """Close the TensorBoard event file, if one is open."""
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    def _open_tensorboard(self) -> None:
        if self.tensorboard and self._tensorboard is None:
            self._tensorboard = TensorBoardRoundWriter(self.output_dir / TENSORBOARD_FOLDER)


def _remove_run_files(folder: Path) -> None:
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        if (folder / name).is_dir():
            shutil.rmtree(folder / name)


def read_rounds(output_dir: Path) -> list[RoundRecord]:
    """The round records a run folder holds so far, in order.

    A run may still be writing: reading stops at a line not yet complete, so a reader
    that polls (``deploy local``'s progress bar) sees each round once it is whole.
    """
    path = Path(output_dir) / ROUNDS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(record_from_json(json.loads(line)))
        except ValueError:
            break  # a line being written
    return records
