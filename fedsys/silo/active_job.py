"""One job running on a coordinator, beside the others: its run and its messages.

The coordinator (:mod:`fedsys.silo.coordinator`) runs several jobs at once over the same
site streams. Each is an :class:`ActiveJob`: its :class:`~fedsys.silo.jobrun.JobRun`
(binding, dataflow, streamed merges), its merge worker and the parts of its outputs
already cut for pushes, its failure and the sites' refusals. :meth:`ActiveJob.messages`
turns the run's actions into the messages each site gets, every one naming the job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from fedsys.silo.input_parts import input_parts, streamed_parts
from fedsys.silo.jobrun import (
    Action,
    Bind,
    Evict,
    JobFailedError,
    JobRun,
    Push,
    PushPart,
    Reclaim,
    RunMerge,
    Seal,
)
from fedsys.silo.merge_worker import MergeWorker
from fedsys.wire.chunks import sha256_hex
from fedsys.wire.protos import silo_pb2

__all__ = ["ActiveJob", "JobRefusedError"]

_LOGGER = logging.getLogger(__name__)


class JobRefusedError(JobFailedError):
    """A job failed because sites refused its tasks under their own rules.

    ``refusals`` holds the ``(site, reason)`` pairs read from ``TaskDone.refused``.
    """

    def __init__(self, message: str, refusals: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.refusals = list(refusals)


@dataclass
class ActiveJob:
    """A job in progress on the coordinator.

    Parameters
    ----------
    run
        The job's run (its state machine).
    analyst
        Who submitted it (sent to the sites with its mode).
    """

    run: JobRun
    analyst: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)
    failure: str | None = None
    refusals: list[tuple[str, str]] = field(default_factory=list)
    """(site, reason) of each task the job's sites refused under their rules."""
    assign_messages: int = 0
    parts_cache: dict[str, list[silo_pb2.InputPart]] = field(default_factory=dict)
    merge_worker: MergeWorker = field(default_factory=MergeWorker)

    @property
    def job_id(self) -> str:
        """The run's unique id (every message about the job carries it)."""
        return self.run.job_id

    def mode_message(self) -> silo_pb2.CoordinatorMessage:
        """What a site hears when the job starts (or when it joins while it runs)."""
        mode = self.run.mode
        return silo_pb2.CoordinatorMessage(mode=silo_pb2.JobMode(
            job_id=self.job_id, late_binding=not mode.early_binding,
            coupled_output=not mode.decoupled_output,
            output_threshold_bytes=mode.output_threshold_bytes, analyst=self.analyst))

    def end_message(self, reason: str) -> silo_pb2.CoordinatorMessage:
        """What every site hears when the job is over: drop its tasks and inputs."""
        return silo_pb2.CoordinatorMessage(
            end=silo_pb2.JobEnd(job_id=self.job_id, reason=reason))

    def fail(self, reason: str) -> None:
        """End the job with ``reason`` (the first reason stays)."""
        if self.failure is None:
            _LOGGER.error("job failed", extra={"job_id": self.job_id, "reason": reason})
            self.failure = reason
        self.done.set()

    def error(self) -> JobFailedError:
        """The error the job's caller gets for its failure."""
        reason = self.failure or "failed"
        if self.refusals:
            return JobRefusedError(reason, self.refusals)
        return JobFailedError(reason)

    def parts(self, key: str) -> list[silo_pb2.InputPart]:
        """Output ``key`` cut into checksummed parts once, however many sites get it."""
        parts = self.parts_cache.get(key)
        if parts is None:
            parts = self.parts_cache[key] = input_parts(
                self.job_id, key, self.run.outputs[key], self.merge_worker.digests.get(key))
        return parts

    def messages(self, actions: Iterable[Action]
                 ) -> tuple[list[tuple[str, silo_pb2.CoordinatorMessage]], list[RunMerge]]:
        """The run's ``actions`` as (site, message) pairs in order, and the merges to
        start; drops what the run released (parts, checksums)."""
        run = self.run
        binds: dict[str, list[silo_pb2.TaskAssignment]] = {}
        merges: list[RunMerge] = []
        rest: list[Action] = []
        for action in actions:
            if isinstance(action, Bind):
                spec = action.spec
                binds.setdefault(action.site, []).append(silo_pb2.TaskAssignment(
                    task_id=spec.task_id, attempt=action.attempt, task=spec.task,
                    params_json=spec.params_json(), inputs=list(spec.inputs),
                    inputs_pushed=action.inputs_pushed, dataset=spec.dataset or "",
                    job_id=run.job_id))
            elif isinstance(action, RunMerge):
                merges.append(action)
            else:
                rest.append(action)
        out: list[tuple[str, silo_pb2.CoordinatorMessage]] = []
        for site, tasks in binds.items():
            self.assign_messages += 1
            out.append((site, silo_pb2.CoordinatorMessage(assign=silo_pb2.Assign(tasks=tasks))))
        seals: dict[str, silo_pb2.InputPart] = {}
        for action in rest:
            if isinstance(action, Push):
                out += [(action.site, silo_pb2.CoordinatorMessage(input=part))
                        for part in self.parts(action.key)]
            elif isinstance(action, PushPart):
                out += [(action.site, silo_pb2.CoordinatorMessage(input=part))
                        for part in streamed_parts(run.job_id, action)]
            elif isinstance(action, Seal):
                seal = seals.get(action.key)
                if seal is None:
                    output = run.outputs[action.key]
                    digest = (self.merge_worker.digests.get(action.key)
                              or sha256_hex(output.payload))
                    seal = seals[action.key] = silo_pb2.InputPart(
                        job_id=run.job_id, key=action.key, meta_json=output.meta_json(),
                        streamed=True, sealed_sha256=digest)
                out.append((action.site, silo_pb2.CoordinatorMessage(input=seal)))
            elif isinstance(action, Reclaim):
                message = silo_pb2.Reclaim(task_ids=list(action.task_ids), job_id=run.job_id)
                out.append((action.site, silo_pb2.CoordinatorMessage(reclaim=message)))
            elif isinstance(action, Evict):
                evict = silo_pb2.Evict(keys=[action.key], job_id=run.job_id)
                out.append((action.site, silo_pb2.CoordinatorMessage(evict=evict)))
        for key in [k for k in self.parts_cache if k not in run.outputs]:
            del self.parts_cache[key]  # released by the run: no task needs it again
        self.merge_worker.forget(keep=run.outputs.__contains__)
        return out, merges

    def release(self) -> None:
        """The job is over: drop its cut parts and checksums."""
        self.parts_cache.clear()
        self.merge_worker.forget()
