"""Write run results to an output folder: JSONL per round, a summary and plots."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from fedsys.metrics.records import RoundRecord


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so readers see the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class JsonlRoundWriter:
    """Append one JSON line per round, flushed so a crash loses at most the current round."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: RoundRecord) -> None:
        """Append ``record``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record.to_json()) + "\n")


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write the run summary as pretty JSON, atomically."""
    atomic_write_text(path, json.dumps(summary, indent=2, default=str) + "\n")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` atomically (temp file, fsync, rename): the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
