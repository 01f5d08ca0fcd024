"""Fair share of the sites between analysts: which silo jobs run on them now.

A standing coordinator runs its analysts' jobs as silo jobs (a query is one or a few,
a training job one per round). Up to ``slots`` silo jobs run on the sites at once, side
by side: each site shares its workers between them, by analyst first
(:mod:`fedsys.silo.site_share`). When more wait, :class:`FairGate` starts the next one
from the waiting analyst with the fewest silo jobs running (round-robin between equals;
first come, first served within one analyst), so one analyst's many jobs never keep
another's from the sites, and a query goes on beside a long training job instead of
waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fedsys.silo.coordinator import JobResult, SiloCoordinator
from fedsys.silo.job import Job
from fedsys.silo.mode import EngineMode, JobFailedError

__all__ = ["AnalystView", "FairGate", "SiteRefusedError"]


class SiteRefusedError(JobFailedError):
    """Sites refused a job's tasks under their own rules (read from ``TaskDone.refused``).

    ``refusals`` holds ``(site, reason)`` pairs; the message names each, as the analyst
    reads it: ``refused by site s1: column(s) x of table t may not be read at this site``.
    """

    def __init__(self, refusals: list[tuple[str, str]]) -> None:
        self.refusals = list(dict.fromkeys(refusals))
        super().__init__("; ".join(f"refused by site {site}: {reason}"
                                   for site, reason in self.refusals))


@dataclass
class _Waiter:
    analyst: str
    job_id: str
    ready: asyncio.Future[str]


class FairGate:
    """Runs silo jobs on one coordinator, up to ``slots`` at once, fairly between analysts.

    Parameters
    ----------
    coordinator
        The started coordinator the sites are connected to.
    slots
        Silo jobs running on the sites at once (1: one at a time, as turns).
    """

    def __init__(self, coordinator: SiloCoordinator, slots: int = 1) -> None:
        if slots < 1:
            raise ValueError(f"the gate needs at least one slot, got {slots}")
        self.coordinator = coordinator
        self.slots = slots
        self.holders: dict[str, str] = {}
        """Federation jobs whose silo job runs now -> their analyst."""
        self._waiting: dict[str, deque[_Waiter]] = {}
        self._turns: deque[str] = deque()
        self.granted: list[str] = []
        """Analysts in the order they were given the sites (for tests and logs)."""

    async def run_job(self, job: Job, mode: EngineMode, timeout_s: float, analyst: str,
                      job_id: str) -> JobResult:
        """Wait for a slot fair to ``analyst``, then run ``job`` on the sites.

        Cancelling the caller while it waits leaves the queue; while its job runs, the
        job is cancelled at the sites (they drop its queued tasks) before this returns.
        """
        key = await self._acquire(analyst, job_id)
        inner = asyncio.ensure_future(
            self.coordinator.run_job(job, mode, timeout_s, analyst=analyst))
        try:
            return await asyncio.shield(inner)
        except JobFailedError as exc:  # a site's own rules said no: the analyst reads why
            refusals = getattr(exc, "refusals", None)
            if refusals:
                raise SiteRefusedError(refusals) from exc
            raise
        except asyncio.CancelledError:
            inner.cancel()  # the coordinator ends the job at every site
            with contextlib.suppress(BaseException):
                await inner
            raise
        finally:
            self._release(key)

    async def _acquire(self, analyst: str, job_id: str) -> str:
        if len(self.holders) < self.slots and not any(self._waiting.values()):
            return self._grant(analyst, job_id)
        waiter = _Waiter(analyst, job_id, asyncio.get_running_loop().create_future())
        queue = self._waiting.setdefault(analyst, deque())
        queue.append(waiter)
        if analyst not in self._turns:
            self._turns.append(analyst)
        try:
            return await waiter.ready
        except asyncio.CancelledError:
            if waiter.ready.done() and not waiter.ready.cancelled():
                self._release(waiter.ready.result())  # granted as it was cancelled: pass on
            elif waiter in queue:
                queue.remove(waiter)
            raise

    def _grant(self, analyst: str, job_id: str) -> str:
        key = job_id
        while key in self.holders:  # the same federation job may run silo jobs at once
            key += "+"
        self.holders[key] = analyst
        self.granted.append(analyst)
        return key

    def _running(self, analyst: str) -> int:
        return sum(1 for owner in self.holders.values() if owner == analyst)

    def _release(self, key: str) -> None:
        self.holders.pop(key, None)
        while len(self.holders) < self.slots:
            waiting = [a for a in self._turns if any(
                not w.ready.done() for w in self._waiting.get(a, ()))]
            self._turns = deque(waiting)  # an analyst with nothing waiting leaves the line
            if not waiting:
                return
            analyst = min(waiting, key=self._running)  # ties: the first in turn order
            self._turns.remove(analyst)
            queue = self._waiting[analyst]
            while queue and queue[0].ready.done():
                queue.popleft()  # cancelled meanwhile
            waiter = queue.popleft()
            if queue:
                self._turns.append(analyst)  # back of the line: the others go first
            waiter.ready.set_result(self._grant(waiter.analyst, waiter.job_id))


class AnalystView:
    """The coordinator as one analyst's job sees it: its silo jobs go through the gate.

    Quacks like :class:`~fedsys.silo.coordinator.SiloCoordinator` for a
    :class:`~fedsys.analytics.query.FederatedQueryEngine` (``run_job``, ``live_sites``).

    Parameters
    ----------
    gate
        The coordinator's fair-share gate.
    analyst, job_id
        Whose job this is.
    policy
        When a site is lost mid-job: ``wait`` for every site the silo job started with
        to be back (up to ``wait_s``) and run it again (up to ``retries`` times), or
        ``fail`` at once (the error names the site).
    log
        Where the job's events go.
    """

    def __init__(self, gate: FairGate, analyst: str, job_id: str, policy: str = "wait",
                 wait_s: float = 120.0, retries: int = 3,
                 log: Callable[[str], None] | None = None) -> None:
        self.gate = gate
        self.analyst = analyst
        self.job_id = job_id
        self.policy = policy
        self.wait_s = wait_s
        self.retries = retries
        self.log = log or (lambda line: None)

    def live_sites(self) -> list[Any]:
        """Connected sites."""
        return self.gate.coordinator.live_sites()

    def site_names(self, dataset: str) -> list[str]:
        """Connected sites holding ``dataset``, sorted."""
        return sorted(v.name for v in self.live_sites() if dataset in v.datasets)

    async def run_job(self, job: Job, mode: EngineMode, timeout_s: float = 600.0
                      ) -> JobResult:
        """Run ``job`` when a slot fair to this analyst is free (again, per the policy,
        when a site is lost).

        Raises
        ------
        JobFailedError
            If the job fails, or a lost site is not back in time.
        """
        attempt = 0
        while True:
            names = {v.name for v in self.live_sites()}
            try:
                return await self.gate.run_job(job, mode, timeout_s, self.analyst,
                                               self.job_id)
            except JobFailedError as exc:
                lost = "was lost" in str(exc)
                if self.policy == "fail" or not lost or attempt >= self.retries:
                    raise
                attempt += 1
                self.log(f"{exc}; waiting up to {self.wait_s:.0f} s for the site to rejoin "
                         f"(retry {attempt} of {self.retries})")
                await self._wait_for(names, str(exc))

    async def round_sites(self, dataset: str, previous: list[str], what: str) -> list[str]:
        """The sites holding ``dataset`` for the next round of a multi-round job.

        A site of the previous round that is gone (lost between rounds, not during a
        silo job) is handled per the policy, as one lost mid-job is: ``fail`` names it,
        ``wait`` waits up to ``wait_s`` for it to rejoin. Sites that joined since take
        part too.

        Raises
        ------
        JobFailedError
            Under ``fail`` when a site is gone, or under ``wait`` when it is not back in time.
        """
        now = self.site_names(dataset)
        missing = sorted(set(previous) - set(now))
        if not missing:
            return now
        reason = (f"site {', '.join(map(repr, missing))} was lost before {what} of job "
                  f"{self.job_id!r}")
        if self.policy == "fail":
            raise JobFailedError(f"{reason} (on_site_failure=fail)")
        self.log(f"{reason}; waiting up to {self.wait_s:.0f} s for it to rejoin")
        await self._wait_for(set(missing), reason)
        return self.site_names(dataset)

    async def _wait_for(self, names: set[str], reason: str) -> None:
        deadline = time.monotonic() + self.wait_s
        while True:
            missing = names - {v.name for v in self.live_sites() if v.rtt_s is not None}
            if not missing:
                return
            if time.monotonic() > deadline:
                raise JobFailedError(f"{reason}; sites {sorted(missing)} did not rejoin "
                                     f"within {self.wait_s:.0f} s")
            await asyncio.sleep(0.2)
