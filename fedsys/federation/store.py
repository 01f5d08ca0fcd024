"""The coordinator's persisted job queue: every accepted job survives a restart.

Each job is a folder ``<state>/jobs/<job_id>/`` holding ``job.json`` (what was asked,
by whom, and its state; rewritten atomically at each change), ``log.jsonl`` (one line
per event, appended), ``result.json`` (a finished job's answer, atomic) and, for a
training job, ``run/`` (the run folder: rounds, summary, plots, final weights,
checkpoint). A coordinator that restarts loads every job; those that were queued or
running go back to the queue, so no accepted job is lost.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from fedsys.metrics.writers import append_json_lines, atomic_write_text, json_safe

__all__ = ["ACTIVE", "FINISHED", "JobRecord", "JobStore"]

ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")
JOB_FILE = "job.json"
LOG_FILE = "log.jsonl"
RESULT_FILE = "result.json"
RUN_FOLDER = "run"


@dataclass(frozen=True)
class JobRecord:
    """One analyst's job as the coordinator keeps it.

    Attributes
    ----------
    job_id, analyst, kind
        Who asked for what (``query`` or ``training``).
    request
        The request's fields (SQL and options, or the run config's text).
    state
        ``queued``, ``running``, ``done``, ``failed`` or ``cancelled``.
    seq
        Order of acceptance (the queue's order within an analyst).
    refused
        Sites' refusals under their own rules, as the analyst sees them.
    """

    job_id: str
    analyst: str
    kind: str
    request: dict[str, Any]
    state: str = "queued"
    seq: int = 0
    submitted_s: float = 0.0
    started_s: float = 0.0
    finished_s: float = 0.0
    error: str = ""
    refused: list[str] = field(default_factory=list)
    summary: str = ""
    progress: str = ""
    attempts: int = 0


class JobStore:
    """Jobs on disk under ``root`` (created if missing).

    Parameters
    ----------
    root
        The coordinator's state folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.jobs: dict[str, JobRecord] = {}

    def folder(self, job_id: str) -> Path:
        """A job's folder."""
        return self.root / "jobs" / job_id

    def run_folder(self, job_id: str) -> Path:
        """A training job's run folder."""
        return self.folder(job_id) / RUN_FOLDER

    def load(self) -> list[JobRecord]:
        """Read every job; a queued or running one goes back to the queue.

        Raises
        ------
        ValueError
            If a ``job.json`` cannot be read (the path is named).
        """
        self.jobs = {}
        for path in sorted((self.root / "jobs").glob(f"*/{JOB_FILE}")):
            try:
                job = JobRecord(**json.loads(path.read_text()))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"cannot read job file {path}: {exc}") from None
            if job.state == "running":
                job = replace(job, state="queued")
                self.save(job)
                self.log(job.job_id, "requeued after a coordinator restart")
            self.jobs[job.job_id] = job
        return self.ordered()

    def add(self, analyst: str, kind: str, request: dict[str, Any], summary: str) -> JobRecord:
        """Accept a job: it is on disk before this returns."""
        job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        seq = 1 + max((j.seq for j in self.jobs.values()), default=0)
        job = JobRecord(job_id, analyst, kind, request, seq=seq, submitted_s=time.time(),
                        summary=summary)
        self.save(job)
        self.log(job_id, f"accepted from {analyst}: {summary}")
        return job

    def save(self, job: JobRecord) -> JobRecord:
        """Write ``job`` atomically and keep it."""
        folder = self.folder(job.job_id)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / JOB_FILE, json.dumps(json_safe(asdict(job)), indent=1))
        self.jobs[job.job_id] = job
        return job

    def update(self, job_id: str, **changes: Any) -> JobRecord:
        """Change fields of a job and write it."""
        return self.save(replace(self.jobs[job_id], **changes))

    def log(self, job_id: str, line: str) -> None:
        """Append one event line to the job's log."""
        entry = {"time_s": round(time.time(), 3), "message": line}
        append_json_lines(self.folder(job_id) / LOG_FILE, [entry])

    def logs(self, job_id: str) -> list[str]:
        """A job's log lines, oldest first (``HH:MM:SS message``)."""
        path = self.folder(job_id) / LOG_FILE
        if not path.exists():
            return []
        lines = []
        for raw in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue  # a line still being written
            stamp = time.strftime("%H:%M:%S", time.localtime(entry["time_s"]))
            lines.append(f"{stamp} {entry['message']}")
        return lines

    def write_result(self, job_id: str, result: dict[str, Any]) -> None:
        """Keep a finished job's answer (atomic)."""
        atomic_write_text(self.folder(job_id) / RESULT_FILE, json.dumps(json_safe(result)))

    def result(self, job_id: str) -> dict[str, Any] | None:
        """A finished job's answer, if any."""
        path = self.folder(job_id) / RESULT_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def run_files(self, job_id: str) -> Iterator[tuple[str, bytes]]:
        """A training job's run-folder files (relative names, contents)."""
        folder = self.run_folder(job_id)
        if not folder.is_dir():
            return
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                yield str(path.relative_to(folder)), path.read_bytes()

    def ordered(self) -> list[JobRecord]:
        """Every job in acceptance order."""
        return sorted(self.jobs.values(), key=lambda j: j.seq)
