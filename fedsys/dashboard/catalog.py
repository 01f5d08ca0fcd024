"""The run folders a dashboard may show, found under the folders it was given.

A URL never names a path: it names a run id, which the catalog maps to a folder it
found itself under one of its roots. A folder reached through a link that leaves its
root is not a run of this dashboard, so nothing outside the given folders is read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from fedsys.dashboard.reader import FIDELITY_FILE, RunReader
from fedsys.metrics.run_folder import CONFIG_FILE, ROUNDS_FILE, SILO_FILE, SUMMARY_FILE

MAX_DEPTH = 3
"""How deep below a root the catalog looks for run folders (``runs/x/sim`` is 2)."""
_MARKERS = (CONFIG_FILE, ROUNDS_FILE, SUMMARY_FILE, SILO_FILE, FIDELITY_FILE)


class UnknownRunError(LookupError):
    """A run id that is not one of the dashboard's run folders."""


@dataclass(frozen=True)
class RunEntry:
    """One run folder: its id in URLs and where it is."""

    run_id: str
    folder: Path


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a run's files."""
    return any((folder / name).is_file() for name in _MARKERS)


class RunCatalog:
    """Run folders under ``roots``, rescanned on demand (runs appear while it serves).

    Parameters
    ----------
    roots
        Run folders, or folders holding run folders (``runs/``).
    """

    def __init__(self, roots: list[Path]) -> None:
        self.roots = [Path(root) for root in roots]
        self._lock = threading.Lock()
        self._entries: dict[str, RunEntry] = {}
        self._readers: dict[Path, RunReader] = {}

    def scan(self) -> list[RunEntry]:
        """Find the run folders now under the roots, in a stable order."""
        found: dict[str, RunEntry] = {}
        for root in self.roots:
            base = root.resolve()
            for folder in _run_folders(base):
                relative = folder.relative_to(base)
                name = base.name if relative == Path(".") else f"{base.name}/{relative}"
                run_id, n = name, 2
                while run_id in found:
                    run_id, n = f"{name}~{n}", n + 1
                found[run_id] = RunEntry(run_id, folder)
        with self._lock:
            self._entries = found
        return list(found.values())

    def entry(self, run_id: str) -> RunEntry:
        """The run called ``run_id``.

        Raises
        ------
        UnknownRunError
            If no run folder under the roots has that id.
        """
        with self._lock:
            entry = self._entries.get(run_id)
        if entry is None:
            self.scan()
            with self._lock:
                entry = self._entries.get(run_id)
        if entry is None:
            raise UnknownRunError(f"{run_id!r} is not a run folder of this dashboard")
        return entry

    def reader(self, run_id: str) -> RunReader:
        """The (shared, incremental) reader of run ``run_id``'s folder."""
        folder = self.entry(run_id).folder
        with self._lock:
            reader = self._readers.get(folder)
            if reader is None:
                reader = self._readers[folder] = RunReader(folder)
        return reader


def _run_folders(base: Path) -> list[Path]:
    """Run folders at or below ``base`` (at most :data:`MAX_DEPTH` deep), inside it."""
    if not base.is_dir():
        return []
    found, frontier = [], [base]
    for depth in range(MAX_DEPTH + 1):
        following = []
        for folder in frontier:
            if is_run_folder(folder):
                found.append(folder)
            if depth == MAX_DEPTH:
                continue
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:
                continue
            for child in children:
                if not child.name.startswith(".") and child.resolve().is_relative_to(base):
                    following.append(child.resolve())
        frontier = following
    return found
