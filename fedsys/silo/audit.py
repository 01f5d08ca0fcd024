"""The site's append-only audit log: one JSON line per task it ran or refused.

Each line says who asked (the analyst the coordinator named), which job and task,
which tables and columns it read, what privacy it cost, when, the site's decision
and why. Lines are appended with ``O_APPEND`` in one ``write`` and synced, so
concurrent site processes never interleave a line and a crash keeps what was written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedsys.metrics.writers import append_text

__all__ = ["AuditLog", "AuditRecord", "read_audit"]


@dataclass(frozen=True)
class AuditRecord:
    """One decision of the site about one task.

    Parameters
    ----------
    decision
        ``run`` (admitted), ``refused``, ``done`` or ``failed`` (its outcome).
    reason
        Why it was refused or how it failed (empty otherwise).
    epsilon, delta
        Privacy the site charged to its ledger for it.
    """

    decision: str
    analyst: str
    job_id: str
    task_id: str
    task: str
    dataset: str = ""
    tables: Sequence[str] = ()
    columns: Sequence[str] = ()
    epsilon: float = 0.0
    delta: float = 0.0
    reason: str = ""
    time: float = field(default_factory=time.time)


class AuditLog:
    """Appends :class:`AuditRecord` lines to ``path``.

    Parameters
    ----------
    path
        The JSON-lines file (created, mode 0600, on first use).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, record: AuditRecord) -> None:
        """Append one record as one line, synced to disk."""
        line = json.dumps(_plain(asdict(record)), sort_keys=True) + "\n"
        append_text(self.path, line, fsync=True, permissions=0o600)


def read_audit(path: Path) -> Iterator[dict[str, Any]]:
    """The records of an audit log, oldest first (a line still being written is skipped)."""
    if not Path(path).exists():
        return
    with open(path) as f:
        for line in f:
            if line.endswith("\n"):
                yield json.loads(line)


def _plain(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in record.items()}
