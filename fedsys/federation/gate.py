"""Fair share of the sites between analysts: who runs the next silo job.

A site runs one silo job at a time (its workers all serve the job in progress), so a
standing coordinator runs its analysts' jobs as a sequence of silo jobs: a query is one
or a few, a training job one per round. :class:`FairGate` hands the sites to the next
silo job round-robin over the analysts waiting (first come, first served within one
analyst), so a long training job of one analyst yields the sites to another analyst's
query between two rounds instead of holding them to its end.
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
    ready: asyncio.Future[None]


class FairGate:
    """Runs silo jobs on one coordinator, one at a time, fairly between analysts.

    Parameters
    ----------
    coordinator
        The started coordinator the sites are connected to.
    """

    def __init__(self, coordinator: SiloCoordinator) -> None:
        self.coordinator = coordinator
        self.holder: str | None = None
        """The federation job whose silo job runs now."""
        self._waiting: dict[str, deque[_Waiter]] = {}
        self._turns: deque[str] = deque()
        self.granted: list[str] = []
        """Analysts in the order they were given the sites (for tests and logs)."""

    async def run_job(self, job: Job, mode: EngineMode, timeout_s: float, analyst: str,
                      job_id: str) -> JobResult:
        """Wait for the sites' turn of ``analyst``, then run ``job`` on them.

        Cancelling the caller while it waits leaves the queue; while its job runs, the
        job is cancelled at the sites (its queued tasks reclaimed) before this returns.
        """
        await self._acquire(analyst, job_id)
        inner = asyncio.ensure_future(
            self.coordinator.run_job(job, mode, timeout_s, analyst=analyst))
        try:
            return await asyncio.shield(inner)
        except JobFailedError as exc:  # a site's own rules said no: the analyst reads why
            if self.coordinator.refusals:
                raise SiteRefusedError(self.coordinator.refusals) from exc
            raise
        except asyncio.CancelledError:
            self.coordinator.cancel(f"job {job_id} was cancelled")
            with contextlib.suppress(Exception):
                await inner
            raise
        finally:
            self._release()

    async def _acquire(self, analyst: str, job_id: str) -> None:
        if self.holder is None and not any(self._waiting.values()):
            self._grant(analyst, job_id)
            return
        waiter = _Waiter(analyst, job_id, asyncio.get_running_loop().create_future())
        queue = self._waiting.setdefault(analyst, deque())
        queue.append(waiter)
        if analyst not in self._turns:
            self._turns.append(analyst)
        try:
            await waiter.ready
        except asyncio.CancelledError:
            if waiter.ready.done() and not waiter.ready.cancelled():
                self._release()  # granted just as it was cancelled: pass the turn on
            elif waiter in queue:
                queue.remove(waiter)
            raise

    def _grant(self, analyst: str, job_id: str) -> None:
        self.holder = job_id
        self.granted.append(analyst)

    def _release(self) -> None:
        self.holder = None
        while self._turns:
            analyst = self._turns.popleft()
            queue = self._waiting.get(analyst)
            if not queue:
                continue
            waiter = queue.popleft()
            if queue:
                self._turns.append(analyst)  # back of the line: the others go first
            if waiter.ready.done():
                continue
            self._grant(waiter.analyst, waiter.job_id)
            waiter.ready.set_result(None)
            return


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
        """Run ``job`` when this analyst's turn comes (again, per the policy, when a site
        is lost).

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
