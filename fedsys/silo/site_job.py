"""What a site holds for one job: its bound tasks, the inputs pushed to them, its outputs.

No I/O: the site manager (:mod:`fedsys.silo.site`) feeds a :class:`SiteJob` the messages
that concern the job and asks it which task can run; the wire messages a task's output
goes back in are built here too (:func:`task_done`, :func:`output_header`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from fedsys.silo.worker import WorkResult
from fedsys.wire.chunks import PayloadError, Reassembler
from fedsys.wire.protos import silo_pb2

__all__ = ["SiteJob", "output_header", "task_done"]


@dataclass
class SiteJob:
    """What the site holds for one job."""

    job_id: str = ""
    analyst: str = ""
    late_binding: bool = False
    coupled_output: bool = False
    threshold_bytes: int = 64 * 1024
    pending: deque[silo_pb2.TaskAssignment] = field(default_factory=deque)
    inputs: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    partial: dict[str, Reassembler] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    """Pushed inputs this site refused: their tasks pull them whole instead."""
    running: int = 0
    """Tasks of the job holding a worker (or queued in the pool) now."""
    asked: int = 0
    """Late binding: tasks asked for and not received yet."""
    served: int = 0
    """When a worker was last given to the job (a counter): ties go to the longest wait."""
    ended: bool = False
    """The job is over at the coordinator: nothing more of it runs or is sent."""

    @classmethod
    def from_mode(cls, mode: silo_pb2.JobMode) -> SiteJob:
        """The state of the job that ``mode`` starts."""
        return cls(
            job_id=mode.job_id,
            analyst=mode.analyst,
            late_binding=mode.late_binding,
            coupled_output=mode.coupled_output,
            threshold_bytes=int(mode.output_threshold_bytes),
        )

    def on_input(self, part: silo_pb2.InputPart, max_input_bytes: int
                 ) -> tuple[bool, str | None]:
        """Collect a pushed input; streamed parts wait for their seal to be checked.

        Returns whether an input became complete, and the reason when the input was
        refused (its tasks will pull it whole: :meth:`refuse`).
        """
        key = part.key
        if part.sealed_sha256:
            assembler = self.partial.pop(key, None)
            if assembler is None:
                return False, None  # joined mid-stream: the whole input is pushed once complete
            try:
                self.inputs[key] = (assembler.result(part.sealed_sha256), part.meta_json)
                return True, None
            except PayloadError as exc:
                return False, f"streamed input {key} refused: {exc}"
        assembler = self.partial.get(key)
        if part.chunk.offset == 0:  # a new push replaces an abandoned stream
            assembler = self.partial[key] = Reassembler(max_input_bytes)
        if assembler is None:
            return False, None  # parts of a stream that began before this session
        try:
            assembler.add(part.chunk)
            if assembler.complete and not part.streamed:
                self.inputs[key] = (assembler.result(), part.meta_json)
                del self.partial[key]
                return True, None
        except PayloadError as exc:
            del self.partial[key]
            return False, f"input {key} refused: {exc}"
        return False, None

    def refuse(self, key: str) -> None:
        """A pushed input failed its checks: the tasks waiting for it pull it instead."""
        self.refused.add(key)

    def evict(self, keys: Iterable[str]) -> None:
        """Drop inputs the coordinator knows no task here needs again."""
        for key in keys:
            self.inputs.pop(key, None)

    def reclaim(self, task_ids: Iterable[str]) -> list[str]:
        """Give back the queued (never started) tasks among ``task_ids``; their ids."""
        wanted = set(task_ids)
        given = [t.task_id for t in self.pending if t.task_id in wanted]
        self.pending = deque(t for t in self.pending if t.task_id not in wanted)
        return given

    def runnable(self, take: bool = True) -> silo_pb2.TaskAssignment | None:
        """The first queued task whose pushed inputs are all here (or refused); taken
        off the queue unless ``take`` is false."""
        for index, task in enumerate(self.pending):
            if not task.inputs_pushed or all(k in self.inputs or k in self.refused
                                             for k in task.inputs):
                if take:
                    del self.pending[index]
                return task
        return None

    def holds(self) -> int:
        """Tasks of a late-binding job asked for, queued or running here."""
        return self.asked + len(self.pending) + self.running

    def end(self) -> None:
        """Drop the job's queued tasks and inputs at once (its running tasks finish)."""
        self.ended = True
        self.pending.clear()
        self.inputs.clear()
        self.partial.clear()


def task_done(task: silo_pb2.TaskAssignment, result: WorkResult, job_id: str
              ) -> silo_pb2.TaskDone:
    """A finished task's report, its output inline."""
    return silo_pb2.TaskDone(
        task_id=task.task_id, attempt=task.attempt, compute_s=result.compute_s,
        inline=not result.error, payload=result.payload, meta_json=result.meta_json,
        error=result.error, payload_bytes=len(result.payload), start_s=result.start_s,
        end_s=result.end_s, job_id=job_id, worker_pid=result.worker_pid)


def output_header(task: silo_pb2.TaskAssignment, result: WorkResult, job_id: str
                  ) -> silo_pb2.OutputHeader:
    """The header of a large output sent on its own stream (``PutOutput``)."""
    return silo_pb2.OutputHeader(
        task_id=task.task_id, attempt=task.attempt, meta_json=result.meta_json, job_id=job_id,
        compute_s=result.compute_s, start_s=result.start_s, end_s=result.end_s,
        worker_pid=result.worker_pid)
