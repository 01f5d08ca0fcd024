"""Incremental, read-only views of one run folder's files.

A run may still be writing: each read picks up only the bytes appended since the last
one and stops at a line not yet complete, so a page that polls every few hundred
milliseconds costs a ``stat`` while nothing changes. A file that shrank was rewritten
(a resumed run): the reader starts it over.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from fedsys.metrics.run_folder import (
    CLIENTS_FILE,
    CONFIG_FILE,
    ROUNDS_FILE,
    SILO_FILE,
    STATUS_FILE,
    SUMMARY_FILE,
)
from fedsys.metrics.timeline import TIMELINE_KEY

FIDELITY_FILE = "fidelity.json"
"""What ``fedsys fidelity`` writes beside its ``deploy/`` run folder (totals, rounds)."""
MAX_STATUS_POINTS = 5000
"""Status lines kept in memory (the oldest go first)."""


class _JsonLines:
    """The complete JSON lines of a growing file, parsed once each."""

    def __init__(
        self, path: Path, keep: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    ) -> None:
        self.path = path
        self.keep = keep
        """What of each row to hold in memory (default: all of it)."""
        self.offset = 0
        self.rows: list[tuple[int, dict[str, Any]]] = []
        """``(byte offset of the line, parsed row)`` per complete line."""
        self.generation = 0
        """Bumped whenever the file was rewritten and the rows started over."""

    def refresh(self) -> bool:
        """Read what was appended; True when something changed."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < self.offset:  # rewritten (a resume) or removed
            self.offset, self.rows = 0, []
            self.generation += 1
            if size == 0:
                return True
        if size == self.offset:
            return False
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read(size - self.offset)
        end = chunk.rfind(b"\n")
        if end < 0:
            return False
        position = self.offset
        for line in chunk[: end + 1].splitlines(keepends=True):
            start, position = position, position + len(line)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a torn line from a crashed writer: skip, never stop the view
            if isinstance(row, dict):
                self.rows.append((start, row if self.keep is None else self.keep(row)))
        self.offset += end + 1
        return True


class _JsonFile:
    """A whole JSON file written atomically, re-read when its size or mtime changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stamp: tuple[int, int] | None = None
        self.value: dict[str, Any] | None = None

    def refresh(self) -> bool:
        """Re-read a changed file; True when the value changed."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            changed = self.value is not None
            self.value, self.stamp = None, None
            return changed
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self.stamp:
            return False
        try:
            value = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return False  # written atomically: only a foreign file reads badly
        self.value, self.stamp = (value if isinstance(value, dict) else None), stamp
        return True


class RunReader:
    """What the dashboard reads of one run folder; every method is thread-safe.

    Parameters
    ----------
    folder
        The run folder (``rounds.jsonl``, ``summary.json``, ``config.yaml`` ...).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._rounds = _JsonLines(folder / ROUNDS_FILE)
        self._timelines = _JsonLines(folder / CLIENTS_FILE, keep=_overview)
        self._status = _JsonLines(folder / STATUS_FILE)
        self._silo = _JsonLines(folder / SILO_FILE)
        self._summary = _JsonFile(folder / SUMMARY_FILE)
        self._fidelity = _JsonFile(folder / FIDELITY_FILE)
        self._config: dict[str, Any] | None = None

    def refresh(self) -> dict[str, bool]:
        """Pick up appended rounds, timelines, status lines and a new summary."""
        with self._lock:
            changed = {
                "rounds": self._rounds.refresh(),
                "timelines": self._timelines.refresh(),
                "status": self._status.refresh(),
                "silo": self._silo.refresh(),
                "summary": self._summary.refresh(),
                "fidelity": self._fidelity.refresh(),
            }
            if changed["summary"]:
                self._config = None  # a resumed deployment rewrites its config with its summary
            if len(self._status.rows) > MAX_STATUS_POINTS:
                del self._status.rows[: len(self._status.rows) - MAX_STATUS_POINTS]
            return changed

    def rounds(self, since: int = 0) -> list[dict[str, Any]]:
        """Round records (flat JSON, as in ``rounds.jsonl``) from the ``since``-th on."""
        with self._lock:
            return [row for _, row in self._rounds.rows[since:]]

    def round_count(self) -> int:
        """Round records read so far."""
        with self._lock:
            return len(self._rounds.rows)

    def generation(self) -> int:
        """Changes when ``rounds.jsonl`` was rewritten (a page must reload its rounds)."""
        with self._lock:
            return self._rounds.generation

    def timeline_overview(self, since: int = 0) -> list[dict[str, Any]]:
        """Each recorded timeline without its client rows (fleet, selector, counts)."""
        with self._lock:
            return [row for _, row in self._timelines.rows[since:]]

    def timeline_count(self) -> int:
        """Timelines read so far."""
        with self._lock:
            return len(self._timelines.rows)

    def timeline(self, round_idx: int) -> dict[str, Any] | None:
        """Round ``round_idx``'s full timeline (``None``: not recorded)."""
        with self._lock:
            offset = next(
                (at for at, row in reversed(self._timelines.rows) if row["round_idx"] == round_idx),
                None,
            )
            if offset is not None:  # read the one line: client rows are not kept in memory
                with self._timelines.path.open("rb") as handle:
                    handle.seek(offset)
                    row = json.loads(handle.readline())
                return row if isinstance(row, dict) else None
        return self._deploy_timeline(round_idx)

    def status(self, since: int = 0) -> list[dict[str, Any]]:
        """A deployment's status samples from the ``since``-th kept one on."""
        with self._lock:
            return [row for _, row in self._status.rows[since:]]

    def status_count(self) -> int:
        """Status samples kept so far."""
        with self._lock:
            return len(self._status.rows)

    def silo(self, since: int = 0) -> list[dict[str, Any]]:
        """A silo job log's task and job lines from the ``since``-th on."""
        with self._lock:
            return [row for _, row in self._silo.rows[since:]]

    def silo_count(self) -> int:
        """Silo log lines read so far."""
        with self._lock:
            return len(self._silo.rows)

    def summary(self) -> dict[str, Any] | None:
        """``summary.json`` once the run has ended (``None`` while it runs)."""
        with self._lock:
            return self._summary.value

    def fidelity(self) -> dict[str, Any] | None:
        """``fidelity.json`` of a ``fedsys fidelity`` folder (``None`` elsewhere)."""
        with self._lock:
            return self._fidelity.value

    def config(self) -> dict[str, Any]:
        """The resolved run config (``{}`` when the folder has none or it is unreadable)."""
        with self._lock:
            if self._config is None:
                self._config = _read_yaml(self.folder / CONFIG_FILE)
            return self._config

    def _deploy_timeline(self, round_idx: int) -> dict[str, Any] | None:
        """A deployment's round as a timeline of each client's outcome and duration.

        For deployment folders written before the server measured each client's
        phases (a deployment now writes ``clients.jsonl`` as a simulation does).
        """
        with self._lock:
            record = next(
                (r for _, r in self._rounds.rows if r.get("round_idx") == round_idx), None
            )
        if record is None or not isinstance(record.get("clients"), list):
            return None
        rows = []
        for entry in record["clients"]:
            if not isinstance(entry, dict):
                return None  # a simulated record: arrived ids only, no phases
            duration = entry.get("duration_s")
            outcome = str(entry.get("outcome", "completed"))[:1]
            rows.append([entry.get("client_id"), 0.0, None, None, None, outcome, duration])
        return {
            "round_idx": round_idx,
            "v": 1,
            "start_s": record.get("start_s"),
            "end_s": record.get("end_s"),
            "available": None,
            "closed_by": None,
            "clients": rows,
            "measured": True,
        }


def _overview(row: dict[str, Any]) -> dict[str, Any]:
    clients = row.get("clients") or []
    counts: dict[str, int] = {}
    for client in clients:
        if isinstance(client, list) and len(client) > 5:
            counts[str(client[5])] = counts.get(str(client[5]), 0) + 1
    overview = {k: v for k, v in row.items() if k != "clients" and k != TIMELINE_KEY}
    overview["outcomes"] = counts
    return overview


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}
