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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def read_json_file(path: Path, what: str) -> Any:
    """The JSON value in ``path``, or ``{}`` when there is no file yet.

    Why: the files written with :func:`atomic_write_text` under :func:`exclusive_lock`
    (privacy ledgers) are read back the same way; a damaged one is refused in one line
    naming ``what`` it is, never a traceback.

    Raises
    ------
    ValueError
        ``"{what} {path} is corrupt: ..."`` when the file is not valid JSON.
    """
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {path} is corrupt: {exc}") from None


def append_text(
    path: Path,
    text: str,
    *,
    fsync: bool = False,
    permissions: int = 0o666,
    make_parent: bool = True,
) -> None:
    """Append ``text`` to ``path`` in one ``O_APPEND`` write; the file is created if missing.

    Why one write: several processes appending to one file never interleave their
    lines, and a reader sees whole lines or none of the new ones (short of a crash).

    Parameters
    ----------
    path
        The file appended to.
    text
        Whole lines, each ending in a newline.
    fsync
        Sync the file before returning, so the lines survive a crash of the machine.
    permissions
        Mode of a file this call creates (the umask applies), e.g. ``0o600`` for an
        audit log only its owner may read.
    make_parent
        Create the parent folder first if it is missing.
    """
    if make_parent:
        path.parent.mkdir(parents=True, exist_ok=True)
    data = memoryview(text.encode())
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, permissions)
    try:
        while data:  # a regular file takes it all at once; a short write goes on where it left
            data = data[os.write(fd, data) :]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def append_json_lines(
    path: Path,
    rows: Iterable[Any],
    *,
    fsync: bool = False,
    permissions: int = 0o666,
    make_parent: bool = True,
) -> int:
    """Append each of ``rows`` as one strict JSON line (see :func:`dumps`), all in one write.

    Nothing is written, and no file or folder created, when ``rows`` is empty. The
    keyword arguments are :func:`append_text`'s.

    Returns
    -------
    int
        How many lines were appended.
    """
    lines = [dumps(row) + "\n" for row in rows]
    if lines:
        append_text(
            path, "".join(lines), fsync=fsync, permissions=permissions, make_parent=make_parent
        )
    return len(lines)


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
        """Append ``record`` and sync it to disk."""
        append_json_lines(self.path, [record.to_json()], fsync=True)

    def rewrite(self, records: list[RoundRecord]) -> None:
        """Replace the file atomically with exactly ``records`` (used on resume)."""
        atomic_write_text(self.path, "".join(dumps(r.to_json()) + "\n" for r in records))


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write the run summary as pretty JSON, atomically."""
    atomic_write_text(path, dumps(summary, indent=2) + "\n")
