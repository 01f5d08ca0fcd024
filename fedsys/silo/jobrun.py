"""One job run as a state machine without I/O: events in, actions out.

The coordinator (:mod:`fedsys.silo.coordinator`) drives a :class:`JobRun` with events (a
site's output or its upload progress, a task request, a reclaim answer, a failure, a lost
site, a finished merge) and turns the actions it answers with into messages. The run
composes three parts, one concern each:

- :mod:`fedsys.silo.binding`: which task goes to which site, early or late, and reclaim;
- :mod:`fedsys.silo.dataflow`: outputs, pushes, release, and which merges are ready;
- :mod:`fedsys.silo.streams`: block merges that run while their inputs stream in (Sol).

A ready merge is answered with a :class:`~fedsys.silo.actions.RunMerge`: its computation
grows with the data, so the coordinator runs it in a worker thread and hands the output
back with :meth:`JobRun.on_merged`; every change of the run's state stays on the caller's
thread. :func:`settle` runs merges inline, for callers without an event loop (tests).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from fedsys.silo.actions import (
    Action,
    Bind,
    Evict,
    Push,
    PushPart,
    Reclaim,
    RunMerge,
    Seal,
    TaskRecord,
)
from fedsys.silo.binding import Binder, SiteView
from fedsys.silo.dataflow import Dataflow
from fedsys.silo.job import Job, Merge, SiteTask
from fedsys.silo.mode import EngineMode, FailurePolicy, JobFailedError
from fedsys.silo.streams import MergeStreams, Stream
from fedsys.silo.task_registry import Output

__all__ = [
    "Action",
    "Bind",
    "EngineMode",
    "Evict",
    "FailurePolicy",
    "JobFailedError",
    "JobRun",
    "Push",
    "PushPart",
    "Reclaim",
    "RunMerge",
    "Seal",
    "SiteView",
    "TaskRecord",
    "settle",
]


class JobRun:
    """The state of one job on a set of sites.

    Parameters
    ----------
    job
        The job.
    mode
        Binding and communication mode.
    sites
        Connected sites by name (shared with the coordinator, which updates them).
    """

    def __init__(self, job: Job, mode: EngineMode, sites: dict[str, SiteView]) -> None:
        self.job = job
        self.mode = mode
        self.sites = sites
        self.job_id = f"{job.name}-{secrets.token_hex(4)}"
        self.stats = {"binds": 0, "requests": 0, "pushes": 0, "duplicates": 0,
                      "unassigned": 0, "reruns": 0, "reclaimed": 0, "lost_sites": 0,
                      "skipped": 0, "streamed_merges": 0, "abandoned_streams": 0,
                      "stale_failures": 0}
        self.flow = Dataflow(job, sites, self.stats)
        self.binder = Binder(job, mode, sites, self.flow, self.stats)
        self.merge_streams = MergeStreams(self.flow, self.binder, self.stats)
        self.records: list[TaskRecord] = []
        self._running: dict[str, tuple[Stream, int] | None] = {}
        # The parts' containers, by their usual names (the same objects, never rebound).
        self.outputs = self.flow.outputs
        self.done = self.flow.done
        self.unbound = self.binder.unbound
        self.bound_to = self.binder.bound_to
        self.streams = self.merge_streams.streams

    @property
    def streaming(self) -> bool:
        """Whether upload progress can matter: Sol mode and a merge that streams."""
        return (self.mode.early_binding and self.mode.decoupled_output
                and any(m.blocks is not None for m in self.job.merges))

    @property
    def complete(self) -> bool:
        """Whether every result of the job exists."""
        return all(key in self.done for key in self.job.results)

    def start(self) -> list[Action]:
        """Start merges of constants, check every task can run somewhere, bind the first.

        Raises
        ------
        JobFailedError
            If some task has no connected site that can run it.
        """
        actions: list[Action] = []
        for spec in self.job.tasks:
            if not any(view.can_run(spec) for view in self.sites.values()):
                if not spec.optional:
                    raise JobFailedError(_no_site_message(spec, None))
                actions += self._skip(spec.task_id, _no_site_message(spec, None))
        actions += self._run_ready_merges()
        return actions + self.schedule()

    def schedule(self) -> list[Action]:
        """Bind what the mode allows now; early binding may also reclaim from slow sites."""
        return self.binder.schedule()

    def pending_inputs(self, site: str, key: str) -> bool:
        """Whether ``site`` holds a bound task that consumes ``key`` (may fetch it)."""
        return self.binder.pending_inputs(site, key)

    # ----------------------------------------------------------------- outputs

    def _skip(self, task_id: str, reason: str) -> list[Action]:
        """Give an optional task that no site can run an empty, marked output."""
        self.binder.drop(task_id)
        self.stats["skipped"] += 1
        return self._store(task_id, Output(b"", {"skipped": reason}))

    def _store(self, key: str, output: Output) -> list[Action]:
        """Keep an output and push it to the sites of its early-bound consumers."""
        actions = self.flow.store(key, output)
        return actions + self._push_to_consumers(key)

    def _push_to_consumers(self, key: str) -> list[Action]:
        if not self.mode.early_binding:
            return []
        actions: list[Action] = []
        for consumer in self.flow.consumers.get(key, []):
            site = self.bound_to.get(consumer)
            if site is not None:
                actions += self.flow.push_available(site, [key])
        return actions

    def _run_ready_merges(self) -> list[Action]:
        return [self._merge_action(merge) for merge in self.flow.start_ready_merges()]

    def _merge_action(self, merge: Merge) -> RunMerge:
        """A ready merge's computation, over a snapshot of its inputs: finish its stream
        (whose pushed blocks are then sealed) or run it whole."""
        inputs = {key: self.outputs[key] for key in merge.inputs}
        stream = self.merge_streams.take(merge)
        if stream is None:
            self._running[merge.task_id] = None
            ordered = [inputs[key] for key in merge.inputs]
            return RunMerge(merge.task_id, lambda: merge.fn(ordered))
        self._running[merge.task_id] = (stream, stream.done)
        return RunMerge(merge.task_id, lambda: stream.finish(inputs), sealed=True)

    def on_merged(self, key: str, output: Output) -> list[Action]:
        """The output of merge ``key`` (from its :class:`RunMerge`): seal what its stream
        pushed, store it, start the merges and bind the tasks it makes ready."""
        if key not in self._running or key in self.done:
            return []
        streamed = self._running.pop(key)
        actions: list[Action] = []
        if streamed is not None:
            stream, start = streamed
            actions += self.merge_streams.sealing(stream, start, output)
        actions += self.flow.finish_merge(key, output) + self._push_to_consumers(key)
        actions += self._run_ready_merges()
        return actions + self.schedule()

    # ----------------------------------------------------------------- events

    def on_request(self, site: str, count: int) -> list[Action]:
        """A late-binding site asks for ``count`` more tasks."""
        self.binder.credit(site, count)
        return self.schedule()

    def on_reclaimed(self, site: str, task_ids: Iterable[str]) -> list[Action]:
        """``site`` gave back ``task_ids`` (never started); they are re-bound elsewhere."""
        self.binder.give_back(site, task_ids)
        return self.schedule()

    def on_output(
        self, site: str, task_id: str, output: Output, record: TaskRecord
    ) -> list[Action]:
        """Accept the first output of ``task_id`` from a site it was assigned to.

        Duplicates (a re-run or reclaimed task that finished twice) and outputs of tasks
        never assigned to ``site`` are counted and ignored, so no output counts twice.
        """
        if task_id in self.done:
            self.stats["duplicates"] += 1
            return []
        if site not in self.binder.assigned.get(task_id, set()):
            self.stats["unassigned"] += 1
            return []
        self.binder.finished(task_id)
        view = self.sites.get(site)
        if view is not None:
            view.observe_task(record.end_s - record.start_s, self.flow.specs[task_id].task)
        self.records.append(record)
        actions = self._store(task_id, output)
        actions += self._run_ready_merges()
        return actions + self.schedule()

    def on_progress(self, site: str, task_id: str, attempt: int, meta: Mapping[str, Any],
                    buffer: bytearray, received: int) -> list[Action]:
        """Bytes ``[0, received)`` of the output of ``task_id`` have reached the coordinator.

        Under early binding with decoupled outputs, block merges consuming it go on
        (:meth:`fedsys.silo.streams.MergeStreams.on_progress`).
        """
        if not self.streaming:
            return []
        return self.merge_streams.on_progress(site, task_id, attempt, meta, buffer, received)

    def on_task_failed(self, site: str, task_id: str, error: str) -> list[Action]:
        """A site reports that ``task_id`` failed there (its code raised, or its output
        could not be sent).

        A report about a task already done, or bound elsewhere since (re-run after the
        site was lost and came back), is stale: counted and ignored.

        Raises
        ------
        JobFailedError
            Naming the task and the site, for a task still bound to that site.
        """
        if task_id in self.done or self.bound_to.get(task_id) != site:
            self.stats["stale_failures"] += 1
            return []
        raise JobFailedError(f"task {task_id!r} failed on site {site!r}: {error}")

    def on_site_lost(self, site: str) -> list[Action]:
        """Handle a site that disconnected mid-job, per the failure policy.

        Raises
        ------
        JobFailedError
            Under ``fail`` if the site held tasks, or if a task it held has no other site.
        """
        self.stats["lost_sites"] += 1
        self.merge_streams.site_lost(site)
        lost = self.binder.unbind_site(site)
        self.flow.pushed_to(site).clear()
        if lost and self.mode.on_site_failure is FailurePolicy.FAIL:
            raise JobFailedError(
                f"site {site!r} was lost during job {self.job_id!r} with {len(lost)} "
                f"unfinished tasks (on_site_failure=fail)"
            )
        actions: list[Action] = []
        for task_id in lost:
            self.binder.rebind_later(task_id)
            spec = self.flow.specs[task_id]
            if not any(v.can_run(spec) for v in self.sites.values() if v.name != site):
                if not spec.optional:
                    raise JobFailedError(_no_site_message(spec, site))
                actions += self._skip(task_id, _no_site_message(spec, site))
        if actions:
            actions += self._run_ready_merges()
        return actions + self.schedule()


def settle(run: JobRun, actions: Iterable[Action]) -> list[Action]:
    """Run every :class:`RunMerge` among ``actions`` inline and feed its output back;
    the other actions, with those the merges' outputs led to (merges never left out).

    For a caller without an event loop (tests, a synchronous driver); the coordinator
    instead runs each merge in a worker thread.
    """
    pending = list(actions)
    done: list[Action] = []
    while pending:
        action = pending.pop(0)
        if isinstance(action, RunMerge):
            pending += run.on_merged(action.key, action.compute())
        else:
            done.append(action)
    return done


def _no_site_message(spec: SiteTask, lost: str | None) -> str:
    need = f"dataset {spec.dataset!r}" if spec.dataset else f"site {spec.site!r}"
    if spec.site is None and spec.dataset is None:
        need = f"task {spec.task!r}"
    prefix = f"site {lost!r} was lost and " if lost else ""
    return f"{prefix}no connected site can run task {spec.task_id!r} (needs {need})"
