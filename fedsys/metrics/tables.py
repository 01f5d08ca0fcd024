"""Round records as CSV rows and TensorBoard scalars, for the tools users already have.

Both writers take the same :class:`RoundRecord` the JSONL writer does. CSV keeps the
fixed fields of a record (one column each, empty for a missing value); TensorBoard gets
every numeric value of the flat record, extras included, at step ``round_idx``.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

from fedsys.metrics.records import RoundRecord
from fedsys.metrics.writers import append_text, atomic_write_text

CSV_COLUMNS: tuple[str, ...] = (
    *(f.name for f in fields(RoundRecord) if f.name != "extra"),
    "duration_s",
)
"""Columns of ``rounds.csv``: the record's own fields, then its duration."""


def csv_row(record: RoundRecord) -> str:
    """One CSV line (with newline) for ``record``; NaN, infinity and None are empty."""
    flat = record.to_json()
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([_cell(flat.get(c)) for c in CSV_COLUMNS])
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value


class CsvRoundWriter:
    """Append one synced CSV row per round; the header is written with the first row."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: RoundRecord) -> None:
        """Append ``record`` (after the header when the file is new or empty)."""
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        header = ",".join(CSV_COLUMNS) + "\n" if fresh else ""
        append_text(self.path, header + csv_row(record), fsync=True)

    def rewrite(self, records: list[RoundRecord]) -> None:
        """Replace the file atomically with exactly ``records`` (used on resume)."""
        header = ",".join(CSV_COLUMNS) + "\n"
        atomic_write_text(self.path, header + "".join(csv_row(r) for r in records))


class TensorBoardRoundWriter:
    """Log every numeric value of each round record as a TensorBoard scalar.

    Parameters
    ----------
    log_dir
        Folder of the event files.

    Raises
    ------
    RuntimeError
        If the ``tensorboard`` package is not installed.
    """

    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise RuntimeError(
                "metrics.tensorboard needs the tensorboard package: "
                "pip install 'fedsys[tensorboard]'"
            ) from None
        self.log_dir = log_dir
        self._writer = SummaryWriter(log_dir=str(log_dir))

    def write(self, record: RoundRecord) -> None:
        """Add the record's numeric values at step ``round_idx`` and flush."""
        for key, value in record.to_json().items():
            if key == "round_idx" or isinstance(value, bool):
                continue
            if isinstance(value, int | float) and math.isfinite(value):
                self._writer.add_scalar(f"round/{key}", value, record.round_idx)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()
