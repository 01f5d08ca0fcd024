"""The binding logic of one job run, without I/O: which task goes to which site, and when.

:class:`JobRun` is a state machine the coordinator drives with events (a site's output,
a task request, a reclaim answer, a lost site) and that answers with actions (assign
tasks, push an input, reclaim queued tasks). Sockets live in
:mod:`fedsys.silo.coordinator`; this module is tested with plain values.

Sol mode (Sol, NSDI 2020, https://www.usenix.org/conference/nsdi20/presentation/jin):
*early binding* keeps ``workers + degree`` tasks bound to each site, where the degree
covers one measured RTT of work (``ceil(rtt / task_time)`` per worker, capped by
``max_degree``); a downstream task is bound as soon as its producers are bound and
receives its inputs by push. A site that falls behind has queued tasks reclaimed and
re-bound to an idle site. A block merge (element-wise, e.g. FedAvg) runs while its
inputs still stream in, and its blocks are pushed to the sites of its early-bound
consumers as they are made (:mod:`fedsys.silo.streams`). Baseline mode: *late binding*,
one task per request, inputs pulled by the site once complete.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fedsys.silo.actions import Action, Bind, Evict, Push, PushPart, Reclaim, Seal, TaskRecord
from fedsys.silo.job import Job, Merge, SiteTask
from fedsys.silo.mode import EngineMode, FailurePolicy, JobFailedError
from fedsys.silo.streams import Source, Stream
from fedsys.silo.task_registry import Output

_LOGGER = logging.getLogger(__name__)

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
    "Seal",
    "SiteView",
    "TaskRecord",
]


@dataclass
class SiteView:
    """What the coordinator knows about a connected site (kept across jobs)."""

    name: str
    workers: int
    datasets: tuple[str, ...]
    tasks: frozenset[str]
    rtt_s: float | None = None
    task_s: float | None = None
    alive: bool = True
    task_s_by_name: dict[str, float] = field(default_factory=dict)

    def observe_rtt(self, rtt_s: float) -> None:
        """Fold one RTT sample into the moving average."""
        self.rtt_s = rtt_s if self.rtt_s is None else 0.7 * self.rtt_s + 0.3 * rtt_s

    def observe_task(self, compute_s: float, task: str | None = None) -> None:
        """Fold one task duration into the moving averages (all tasks, and ``task``'s)."""
        self.task_s = _ema(self.task_s, compute_s)
        if task is not None:
            self.task_s_by_name[task] = _ema(self.task_s_by_name.get(task), compute_s)

    def degree(self, max_degree: int, tasks: Iterable[str] = ()) -> int:
        """Tasks to queue beyond the workers: one RTT of work, capped at ``max_degree``.

        The work is timed by the shortest of ``tasks`` (a job's task names) measured at
        this site, so a job of short tasks is not paced by a previous job's long ones;
        by the duration of any task when none of them was measured yet.
        """
        known = [self.task_s_by_name[t] for t in tasks if t in self.task_s_by_name]
        task_s = min(known) if known else self.task_s
        if self.rtt_s is None or task_s is None:
            return min(max_degree, self.workers)
        per_worker = math.ceil(self.rtt_s / max(task_s, 1e-3))
        return max(min(max_degree, 1), min(max_degree, self.workers * per_worker))

    def can_run(self, spec: SiteTask) -> bool:
        """Whether this site holds the task's code and data."""
        return self.alive and spec.task in self.tasks and spec.can_run_on(self.name, self.datasets)


@dataclass
class _Slot:
    """Per-job binding state of one site."""

    bound: dict[str, int] = field(default_factory=dict)  # task id -> attempt, in bind order
    reclaiming: set[str] = field(default_factory=set)
    credits: int = 0
    pushed: set[str] = field(default_factory=set)


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
        self.specs = {spec.task_id: spec for spec in job.tasks}
        self.merges = {merge.task_id: merge for merge in job.merges}
        self.order = {spec.task_id: i for i, spec in enumerate(job.tasks)}
        self.task_names = tuple(dict.fromkeys(spec.task for spec in job.tasks))
        self.outputs: dict[str, Output] = dict(job.constants)
        self.done: set[str] = set(job.constants)
        self.unbound: set[str] = set(self.specs)
        self.bound_to: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        self.assigned: dict[str, set[str]] = {}
        self.slots: dict[str, _Slot] = {name: _Slot() for name in sites}
        self.records: list[TaskRecord] = []
        self.consumers = self._consumers()
        self.streams: dict[str, Stream] = {}
        self.unstreamed: set[str] = set()
        self.stats = {"binds": 0, "requests": 0, "pushes": 0, "duplicates": 0,
                      "unassigned": 0, "reruns": 0, "reclaimed": 0, "lost_sites": 0,
                      "skipped": 0, "streamed_merges": 0, "abandoned_streams": 0,
                      "stale_failures": 0}

    def _consumers(self) -> dict[str, list[str]]:
        consumers: dict[str, list[str]] = {}
        nodes = [(s.task_id, s.inputs) for s in self.job.tasks]
        nodes += [(m.task_id, m.inputs) for m in self.job.merges]
        for node_id, inputs in nodes:
            for key in inputs:
                consumers.setdefault(key, []).append(node_id)
        return consumers

    @property
    def streaming(self) -> bool:
        """Whether upload progress can matter: Sol mode and a merge that streams."""
        return (self.mode.early_binding and self.mode.decoupled_output
                and any(m.blocks is not None for m in self.job.merges))

    @property
    def complete(self) -> bool:
        """Whether every result of the job exists."""
        return all(key in self.done for key in self.job.results)

    def slot(self, site: str) -> _Slot:
        """The job's binding state for ``site`` (created for a site that joins mid-job)."""
        return self.slots.setdefault(site, _Slot())

    def start(self) -> list[Action]:
        """Run merges of constants, check every task can run somewhere, bind the first tasks.

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

    def _skip(self, task_id: str, reason: str) -> list[Action]:
        """Give an optional task that no site can run an empty, marked output."""
        self.unbound.discard(task_id)
        self.bound_to.pop(task_id, None)
        self.stats["skipped"] += 1
        return self._store(task_id, Output(b"", {"skipped": reason}))

    # ----------------------------------------------------------------- binding

    def _ready(self, spec: SiteTask) -> bool:
        return all(key in self.done for key in spec.inputs)

    def _imminent(self, key: str, memo: dict[str, bool]) -> bool:
        """Whether output ``key`` exists or is being produced by bound work."""
        if key in memo:
            return memo[key]
        if key in self.done or key in self.bound_to:
            result = True
        elif key in self.merges:
            memo[key] = False  # guards cycles; the job is a DAG anyway
            result = all(self._imminent(k, memo) for k in self.merges[key].inputs)
        else:
            result = False
        memo[key] = result
        return result

    def _next_task(self, view: SiteView, memo: dict[str, bool]) -> str | None:
        """The first unbound task this site can run: ready ones first, then imminent ones."""
        candidates = sorted(self.unbound, key=self.order.__getitem__)
        early: str | None = None
        for task_id in candidates:
            spec = self.specs[task_id]
            if not view.can_run(spec):
                continue
            if self._ready(spec):
                return task_id
            if early is None and self.mode.early_binding and all(
                self._imminent(k, memo) for k in spec.inputs
            ):
                early = task_id
        return early

    def _limit(self, view: SiteView) -> int:
        return view.workers + view.degree(self.mode.max_degree, self.task_names)

    def _bind(self, site: str, task_id: str) -> list[Action]:
        spec = self.specs[task_id]
        attempt = self.attempts.get(task_id, -1) + 1
        self.attempts[task_id] = attempt
        self.unbound.discard(task_id)
        self.bound_to[task_id] = site
        self.assigned.setdefault(task_id, set()).add(site)
        slot = self.slot(site)
        slot.bound[task_id] = attempt
        self.stats["binds"] += 1
        if attempt > 0:
            self.stats["reruns"] += 1
        actions: list[Action] = [Bind(site, spec, attempt, self.mode.early_binding)]
        if self.mode.early_binding:
            actions += self._push_available(site, spec.inputs)
        return actions

    def _push_available(self, site: str, keys: Iterable[str]) -> list[Action]:
        slot = self.slot(site)
        actions: list[Action] = []
        for key in keys:
            if key in self.done and key not in slot.pushed:
                slot.pushed.add(key)
                self.stats["pushes"] += 1
                actions.append(Push(site, key))
        return actions

    def schedule(self) -> list[Action]:
        """Bind what the mode allows now; early binding may also reclaim from slow sites."""
        if self.mode.early_binding:
            actions = self._schedule_early()
            if self.mode.reclaim:
                actions += self._reclaim()
            return actions
        return self._schedule_late()

    def _schedule_early(self) -> list[Action]:
        actions: list[Action] = []
        memo: dict[str, bool] = {}
        progress = True
        while progress and self.unbound:
            progress = False
            live = [v for v in self.sites.values() if v.alive]
            live.sort(key=lambda v: len(self.slot(v.name).bound) / self._limit(v))
            for view in live:
                if len(self.slot(view.name).bound) >= self._limit(view):
                    continue
                task_id = self._next_task(view, memo)
                if task_id is not None:
                    actions += self._bind(view.name, task_id)
                    memo.clear()
                    progress = True
        return actions

    def _schedule_late(self) -> list[Action]:
        actions: list[Action] = []
        for view in self.sites.values():
            slot = self.slot(view.name)
            while view.alive and slot.credits > 0:
                task_id = self._next_task(view, {})
                if task_id is None:
                    break
                slot.credits -= 1
                actions += self._bind(view.name, task_id)
        return actions

    def _reclaim(self) -> list[Action]:
        """Move queued tasks from a site that falls behind to one that would idle."""
        actions: list[Action] = []
        for idle in self.sites.values():
            slot = self.slot(idle.name)
            if not idle.alive or len(slot.bound) >= idle.workers:
                continue
            free = self._limit(idle) - len(slot.bound)
            best: tuple[float, str, list[str]] | None = None
            for busy in self.sites.values():
                busy_slot = self.slot(busy.name)
                if busy.name == idle.name or not busy.alive or busy_slot.reclaiming:
                    continue
                queued = [t for t in busy_slot.bound if self.specs[t].inputs == ()
                          or self._ready(self.specs[t])]
                queued = queued[busy.workers:]
                movable = [t for t in queued if idle.can_run(self.specs[t])]
                backlog_s = len(queued) * (busy.task_s or 0.0) / busy.workers
                gain_s = (idle.rtt_s or 0.0) + (idle.task_s or busy.task_s or 0.0)
                if len(movable) >= 2 and backlog_s > 2 * gain_s and (
                    best is None or backlog_s > best[0]
                ):
                    best = (backlog_s, busy.name, movable)
            if best is not None:
                _, busy_name, movable = best
                take = tuple(movable[-min(free, len(movable) // 2) :])
                self.slot(busy_name).reclaiming.update(take)
                actions.append(Reclaim(busy_name, take))
        return actions

    # ----------------------------------------------------------------- events

    def on_request(self, site: str, count: int) -> list[Action]:
        """A late-binding site asks for ``count`` more tasks."""
        self.stats["requests"] += 1
        self.slot(site).credits += count
        return self.schedule()

    def on_reclaimed(self, site: str, task_ids: Iterable[str]) -> list[Action]:
        """``site`` gave back ``task_ids`` (never started); they are re-bound elsewhere."""
        slot = self.slot(site)
        for task_id in task_ids:
            if task_id in slot.bound and task_id not in self.done:
                del slot.bound[task_id]
                self.bound_to.pop(task_id, None)
                self.unbound.add(task_id)
                self.stats["reclaimed"] += 1
        slot.reclaiming.clear()
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
        if site not in self.assigned.get(task_id, set()):
            self.stats["unassigned"] += 1
            return []
        holder = self.bound_to.pop(task_id, None)
        if holder is not None:
            self.slot(holder).bound.pop(task_id, None)
            self.slot(holder).reclaiming.discard(task_id)
        self.unbound.discard(task_id)
        view = self.sites.get(site)
        if view is not None:
            view.observe_task(record.end_s - record.start_s, self.specs[task_id].task)
        self.records.append(record)
        actions = self._store(task_id, output)
        actions += self._run_ready_merges()
        return actions + self.schedule()

    def _store(self, key: str, output: Output) -> list[Action]:
        self.outputs[key] = output
        self.done.add(key)
        actions: list[Action] = []
        for inp in self._inputs_of(key):
            actions += self._release(inp)
        if not self.mode.early_binding:
            return actions
        for consumer in self.consumers.get(key, []):
            site = self.bound_to.get(consumer)
            if site is not None:
                actions += self._push_available(site, [key])
        return actions

    def _inputs_of(self, key: str) -> tuple[str, ...]:
        if key in self.specs:
            return self.specs[key].inputs
        if key in self.merges:
            return self.merges[key].inputs
        return ()

    def _release(self, key: str) -> list[Action]:
        """Drop an output once every consumer is done (results are kept); sites too."""
        if key in self.job.results or key not in self.outputs:
            return []
        if not all(c in self.done for c in self.consumers.get(key, [])):
            return []
        del self.outputs[key]
        evictions: list[Action] = []
        for site, slot in self.slots.items():
            if key in slot.pushed:
                evictions.append(Evict(site, key))
        return evictions

    def _run_ready_merges(self) -> list[Action]:
        actions: list[Action] = []
        progress = True
        while progress:
            progress = False
            for merge in self.job.merges:
                if merge.task_id in self.done:
                    continue
                if all(key in self.done for key in merge.inputs):
                    result, sent = self._merge(merge)
                    actions += sent + self._store(merge.task_id, result)
                    progress = True
        return actions

    def _merge(self, merge: Merge) -> tuple[Output, list[Action]]:
        """Run a ready merge: finish its stream (and seal what was pushed) or run it whole."""
        stream = self.streams.pop(merge.task_id, None)
        if stream is None or not stream.intact(self.outputs):
            if stream is not None:
                self._abandon(stream)
            return merge.fn([self.outputs[key] for key in merge.inputs]), []
        start = stream.done
        result = stream.finish(self.outputs)
        actions: list[Action] = []
        for site in sorted(stream.receivers):
            if merge.task_id in self.slot(site).pushed:
                if start < stream.size:
                    actions.append(PushPart(site, merge.task_id, start,
                                            result.payload[start:], stream.size))
                actions.append(Seal(site, merge.task_id))
        return result, actions

    # ----------------------------------------------------------------- streams

    def on_progress(self, site: str, task_id: str, attempt: int, meta: Mapping[str, Any],
                    buffer: bytearray, received: int) -> list[Action]:
        """Bytes ``[0, received)`` of the output of ``task_id`` have reached the coordinator.

        Under early binding with decoupled outputs, every block merge consuming it
        merges the blocks all its inputs now hold and pushes them to its consumers'
        sites. ``buffer`` is the upload's receive buffer (unverified until accepted).
        """
        if not self.streaming:
            return []
        if (task_id in self.done or self.bound_to.get(task_id) != site
                or self.attempts.get(task_id) != attempt):
            return []
        actions: list[Action] = []
        for key in self.consumers.get(task_id, []):
            merge = self.merges.get(key)
            if merge is None or merge.blocks is None or key in self.done:
                continue
            stream = self.streams.get(key) or self._open_stream(merge, len(buffer))
            if stream is None:
                continue
            source = stream.sources.get(task_id)
            if len(buffer) != stream.size or (source is not None and source.buffer is not buffer):
                self._abandon(self.streams.pop(key))
                continue
            stream.sources[task_id] = Source(buffer, received, meta)
            try:
                span = stream.advance(self.outputs)
            except Exception:  # e.g. metadata the merge cannot use: the whole merge reports it
                _LOGGER.warning("merge %s stops streaming", key, exc_info=True)
                self._abandon(self.streams.pop(key))
                continue
            if span is not None:
                lo, hi = span
                data = bytes(stream.out[lo:hi])
                actions += [PushPart(s, key, lo, data, stream.size)
                            for s in sorted(stream.receivers)]
        return actions

    def _open_stream(self, merge: Merge, size: int) -> Stream | None:
        """Start streaming ``merge`` to the sites of its bound consumers (once per merge)."""
        if merge.task_id in self.unstreamed:
            return None
        self.unstreamed.add(merge.task_id)  # a stream opens once; abandoned, it stays off
        if any(len(self.outputs[k].payload) != size for k in merge.inputs if k in self.done):
            return None
        receivers = {self.bound_to[c] for c in self.consumers.get(merge.task_id, [])
                     if c in self.specs and c in self.bound_to}
        for site in receivers:
            self.slot(site).pushed.add(merge.task_id)
        self.stats["streamed_merges"] += 1
        stream = self.streams[merge.task_id] = Stream(merge, size, receivers)
        return stream

    def _abandon(self, stream: Stream) -> None:
        """Stop streaming: the merge runs whole and is pushed in full when complete (a
        site drops the parts it holds when the whole push begins)."""
        self.stats["abandoned_streams"] += 1
        for site in stream.receivers:
            self.slot(site).pushed.discard(stream.merge.task_id)

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
        for stream in self.streams.values():
            stream.receivers.discard(site)
        slot = self.slot(site)
        lost = [t for t in slot.bound if t not in self.done]
        slot.bound.clear()
        slot.reclaiming.clear()
        slot.pushed.clear()
        if lost and self.mode.on_site_failure is FailurePolicy.FAIL:
            raise JobFailedError(
                f"site {site!r} was lost during job {self.job_id!r} with {len(lost)} "
                f"unfinished tasks (on_site_failure=fail)"
            )
        actions: list[Action] = []
        for task_id in lost:
            self.bound_to.pop(task_id, None)
            self.unbound.add(task_id)
            spec = self.specs[task_id]
            if not any(v.can_run(spec) for v in self.sites.values() if v.name != site):
                if not spec.optional:
                    raise JobFailedError(_no_site_message(spec, site))
                actions += self._skip(task_id, _no_site_message(spec, site))
        if actions:
            actions += self._run_ready_merges()
        return actions + self.schedule()

    def pending_inputs(self, site: str, key: str) -> bool:
        """Whether ``site`` holds a bound task that consumes ``key`` (may fetch it)."""
        return any(
            key in self.specs[t].inputs for t in self.slot(site).bound if t in self.specs
        )


def _ema(average: float | None, sample: float) -> float:
    return sample if average is None else 0.8 * average + 0.2 * sample


def _no_site_message(spec: SiteTask, lost: str | None) -> str:
    need = f"dataset {spec.dataset!r}" if spec.dataset else f"site {spec.site!r}"
    if spec.site is None and spec.dataset is None:
        need = f"task {spec.task!r}"
    prefix = f"site {lost!r} was lost and " if lost else ""
    return f"{prefix}no connected site can run task {spec.task_id!r} (needs {need})"
