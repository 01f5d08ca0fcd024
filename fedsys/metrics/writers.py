"""Write run results to an output folder: JSONL per round, a summary and plots.

Every file is written with the user's default permissions (the umask applies), JSON
never holds ``NaN`` or ``Infinity`` (they become ``null``, which every JSON reader
accepts), and whole-file writes are atomic: readers see the old file or the new one.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from fedsys.metrics.records import RoundRecord


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so readers see the old file or the new one, never a torn one."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    atomic_write_bytes(path, text.encode())


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``'s lock file (``.NAME.lock`` beside it).

    Why: a read-modify-write of a shared file (a privacy ledger) by several processes
    must not interleave; the lock is released even if the block raises.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (JSON ``null``)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def dumps(value: Any, indent: int | None = None) -> str:
    """Strict JSON (no ``NaN``/``Infinity``); unknown objects are written as strings."""
    return json.dumps(json_safe(value), indent=indent, allow_nan=False, default=str)


class JsonlRoundWriter:
    """Append one JSON line per round, flushed so a crash loses at most the current round."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: RoundRecord) -> None:
        """Append ``record`` and flush it to disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            _append_line(handle, dumps(record.to_json()))

    def rewrite(self, records: list[RoundRecord]) -> None:
        """Replace the file atomically with exactly ``records`` (used on resume)."""
        atomic_write_text(self.path, "".join(dumps(r.to_json()) + "\n" for r in records))


def _append_line(handle: IO[str], line: str) -> None:
    handle.write(line + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write the run summary as pretty JSON, atomically."""
    atomic_write_text(path, dumps(summary, indent=2) + "\n")
