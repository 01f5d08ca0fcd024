"""The dataflow of one job run, without I/O: which outputs exist, who needs them, merges.

:class:`Dataflow` holds a job's outputs (constants, accepted task outputs, merge results),
pushes them to the sites whose bound tasks consume them, drops each one once every
consumer is done (telling the sites that hold it), and says which coordinator merges
are ready. A ready merge is not computed here: the run answers with a
:class:`~fedsys.silo.actions.RunMerge` whose computation the coordinator runs off its
event loop, then hands the result back (:meth:`fedsys.silo.jobrun.JobRun.on_merged`).
Which task runs where is :mod:`fedsys.silo.binding`'s business.
"""

from __future__ import annotations

from collections.abc import Iterable

from fedsys.silo.actions import Action, Evict, Push
from fedsys.silo.job import Job, Merge, SiteTask
from fedsys.silo.task_registry import Output

__all__ = ["Dataflow"]


class Dataflow:
    """The outputs of one job and where they were sent.

    Parameters
    ----------
    job
        The job.
    sites
        Names of the sites connected when the job starts (others are added as they join).
    stats
        The run's counters (``pushes`` is counted here).
    """

    def __init__(self, job: Job, sites: Iterable[str], stats: dict[str, int]) -> None:
        self.job = job
        self.stats = stats
        self.specs = {spec.task_id: spec for spec in job.tasks}
        self.merges = {merge.task_id: merge for merge in job.merges}
        self.consumers = _consumers(job)
        self.outputs: dict[str, Output] = dict(job.constants)
        self.done: set[str] = set(job.constants)
        self.pushed: dict[str, set[str]] = {name: set() for name in sites}
        self.merging: set[str] = set()

    def pushed_to(self, site: str) -> set[str]:
        """Outputs pushed to ``site`` in this job (created for a site that joins mid-job)."""
        return self.pushed.setdefault(site, set())

    def ready(self, spec: SiteTask) -> bool:
        """Whether every input of ``spec`` exists."""
        return all(key in self.done for key in spec.inputs)

    def push_available(self, site: str, keys: Iterable[str]) -> list[Action]:
        """Push to ``site`` each of ``keys`` that exists and was not pushed there yet."""
        pushed = self.pushed_to(site)
        actions: list[Action] = []
        for key in keys:
            if key in self.done and key not in pushed:
                pushed.add(key)
                self.stats["pushes"] += 1
                actions.append(Push(site, key))
        return actions

    def store(self, key: str, output: Output) -> list[Action]:
        """Keep output ``key``; release its inputs that no other consumer needs."""
        self.outputs[key] = output
        self.done.add(key)
        actions: list[Action] = []
        for inp in self.inputs_of(key):
            actions += self.release(inp)
        return actions

    def inputs_of(self, key: str) -> tuple[str, ...]:
        """The inputs of task or merge ``key`` (none for a constant)."""
        if key in self.specs:
            return self.specs[key].inputs
        if key in self.merges:
            return self.merges[key].inputs
        return ()

    def release(self, key: str) -> list[Action]:
        """Drop an output once every consumer is done (results are kept); sites too."""
        if key in self.job.results or key not in self.outputs:
            return []
        if not all(c in self.done for c in self.consumers.get(key, [])):
            return []
        del self.outputs[key]
        return [Evict(site, key) for site, pushed in self.pushed.items() if key in pushed]

    def start_ready_merges(self) -> list[Merge]:
        """Merges whose inputs all exist and that are neither done nor running; they are
        marked running until :meth:`finish_merge`."""
        ready = [
            merge for merge in self.job.merges
            if merge.task_id not in self.done and merge.task_id not in self.merging
            and all(key in self.done for key in merge.inputs)
        ]
        self.merging.update(merge.task_id for merge in ready)
        return ready

    def finish_merge(self, key: str, output: Output) -> list[Action]:
        """A running merge's result: stored like any output."""
        self.merging.discard(key)
        return self.store(key, output)


def _consumers(job: Job) -> dict[str, list[str]]:
    """Who consumes each output: task and merge ids by input id, in job order."""
    consumers: dict[str, list[str]] = {}
    nodes = [(s.task_id, s.inputs) for s in job.tasks]
    nodes += [(m.task_id, m.inputs) for m in job.merges]
    for node_id, inputs in nodes:
        for key in inputs:
            consumers.setdefault(key, []).append(node_id)
    return consumers
