"""Binding policy of one job run, without I/O: which task goes to which site, and when.

Sol mode (Sol, NSDI 2020, https://www.usenix.org/conference/nsdi20/presentation/jin):
*early binding* keeps ``workers + degree`` tasks bound to each site, where the degree
covers one measured RTT of work (``ceil(rtt / task_time)`` per worker, capped by
``max_degree``); a downstream task is bound as soon as its producers are bound and
receives its inputs by push. A site that falls behind has queued tasks reclaimed and
re-bound to an idle site. Baseline mode: *late binding*, one task per request, inputs
pulled by the site once complete.

:class:`SiteView` is what the coordinator knows of a site across jobs; :class:`Binder`
holds one job's binding state and answers with :class:`~fedsys.silo.actions.Bind` and
:class:`~fedsys.silo.actions.Reclaim` actions. Outputs and pushes are
:mod:`fedsys.silo.dataflow`'s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from fedsys.silo.actions import Action, Bind, Reclaim
from fedsys.silo.dataflow import Dataflow
from fedsys.silo.job import Job, SiteTask
from fedsys.silo.mode import EngineMode

__all__ = ["Binder", "SiteSlot", "SiteView"]


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
class SiteSlot:
    """Per-job binding state of one site."""

    bound: dict[str, int] = field(default_factory=dict)  # task id -> attempt, in bind order
    reclaiming: set[str] = field(default_factory=set)
    credits: int = 0


class Binder:
    """Which site holds each task of one job, and the policy that binds the next ones.

    Parameters
    ----------
    job
        The job.
    mode
        Binding and communication mode.
    sites
        Connected sites by name (shared with the coordinator, which updates them).
    flow
        The job's outputs (readiness of inputs; pushes of a bound task's inputs).
    stats
        The run's counters (``binds``, ``reruns``, ``requests``, ``reclaimed``).
    """

    def __init__(self, job: Job, mode: EngineMode, sites: dict[str, SiteView],
                 flow: Dataflow, stats: dict[str, int]) -> None:
        self.mode = mode
        self.sites = sites
        self.flow = flow
        self.stats = stats
        self.specs = {spec.task_id: spec for spec in job.tasks}
        self.order = {spec.task_id: i for i, spec in enumerate(job.tasks)}
        self.task_names = tuple(dict.fromkeys(spec.task for spec in job.tasks))
        self.unbound: set[str] = set(self.specs)
        self.bound_to: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        self.assigned: dict[str, set[str]] = {}
        self.slots: dict[str, SiteSlot] = {name: SiteSlot() for name in sites}

    def slot(self, site: str) -> SiteSlot:
        """The job's binding state for ``site`` (created for a site that joins mid-job)."""
        return self.slots.setdefault(site, SiteSlot())

    def _imminent(self, key: str, memo: dict[str, bool]) -> bool:
        """Whether output ``key`` exists or is being produced by bound work."""
        if key in memo:
            return memo[key]
        merges = self.flow.merges
        if key in self.flow.done or key in self.bound_to:
            result = True
        elif key in merges:
            memo[key] = False  # guards cycles; the job is a DAG anyway
            result = all(self._imminent(k, memo) for k in merges[key].inputs)
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
            if self.flow.ready(spec):
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
        self.slot(site).bound[task_id] = attempt
        self.stats["binds"] += 1
        if attempt > 0:
            self.stats["reruns"] += 1
        actions: list[Action] = [Bind(site, spec, attempt, self.mode.early_binding)]
        if self.mode.early_binding:
            actions += self.flow.push_available(site, spec.inputs)
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
                          or self.flow.ready(self.specs[t])]
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

    def credit(self, site: str, count: int) -> None:
        """A late-binding site asks for ``count`` more tasks."""
        self.stats["requests"] += 1
        self.slot(site).credits += count

    def give_back(self, site: str, task_ids: Iterable[str]) -> None:
        """``site`` gave back ``task_ids`` (never started): they are unbound again."""
        slot = self.slot(site)
        for task_id in task_ids:
            if task_id in slot.bound and task_id not in self.flow.done:
                del slot.bound[task_id]
                self.bound_to.pop(task_id, None)
                self.unbound.add(task_id)
                self.stats["reclaimed"] += 1
        slot.reclaiming.clear()

    def finished(self, task_id: str) -> None:
        """``task_id``'s output was accepted: it no longer holds a place at any site."""
        holder = self.bound_to.pop(task_id, None)
        if holder is not None:
            self.slot(holder).bound.pop(task_id, None)
            self.slot(holder).reclaiming.discard(task_id)
        self.unbound.discard(task_id)

    def drop(self, task_id: str) -> None:
        """``task_id`` will not run (skipped): it is neither bound nor waiting."""
        self.unbound.discard(task_id)
        self.bound_to.pop(task_id, None)

    def unbind_site(self, site: str) -> list[str]:
        """``site`` was lost: empty its slot; the unfinished tasks it held (still marked
        bound until :meth:`rebind_later`)."""
        slot = self.slot(site)
        lost = [t for t in slot.bound if t not in self.flow.done]
        slot.bound.clear()
        slot.reclaiming.clear()
        return lost

    def rebind_later(self, task_id: str) -> None:
        """``task_id`` waits to be bound again (its site was lost)."""
        self.bound_to.pop(task_id, None)
        self.unbound.add(task_id)

    def pending_inputs(self, site: str, key: str) -> bool:
        """Whether ``site`` holds a bound task that consumes ``key`` (may fetch it)."""
        return any(
            key in self.specs[t].inputs for t in self.slot(site).bound if t in self.specs
        )


def _ema(average: float | None, sample: float) -> float:
    return sample if average is None else 0.8 * average + 0.2 * sample
